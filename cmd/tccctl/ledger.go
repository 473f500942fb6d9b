package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/keys"
	"github.com/trustcells/tcc/ledger/audit"
)

func newLedgerCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Audit log: tail, show, prove, export, verify, replay",
		Long: `The ledger is tccd's tamper-evident audit log: every registration, call
(call.begin before the sandbox exists, call.end after the wipe), replay and
daemon start or stop is an event, a leaf of an RFC 6962 Merkle tree whose
root is signed in C2SP checkpoints by the daemon's ledger key.

An auditor needs only the verifier key ('tccctl ledger key') to check
proofs and exports offline: 'tccctl ledger verify' uses no daemon and no
network. Nothing here changes or deletes an event. Callers who are not
admins see only their own tenant's events.`,
	}
	cmd.AddCommand(
		newLedgerKeyCmd(g),
		newLedgerCheckpointCmd(g),
		newLedgerTailCmd(g),
		newLedgerShowCmd(g),
		newLedgerProveCmd(g),
		newLedgerConsistencyCmd(g),
		newLedgerExportCmd(g),
		newLedgerVerifyCmd(g),
		newLedgerReplayCmd(g),
	)
	return cmd
}

func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, usageErrorf("%q is not an event seq (a number)", s)
	}
	return n, nil
}

func newLedgerKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Print the key that verifies the ledger's checkpoints",
		Long: `Print the verifier key of the ledger's checkpoints and exports, the line
of a .pub file: save it and give it to 'tccctl ledger verify --key'. Get it
once, over a channel you trust, not with every export.`,
		Example: `  tccctl ledger key > ledger.pub`,
		Args:    args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := g.client().LedgerKey(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), k)
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Verifier)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func newLedgerCheckpointCmd(g *globals) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint",
		Long: `Print the ledger's latest checkpoint, which covers every event appended so
far: a C2SP signed note (origin, tree size, base64 root hash, signature).
tccd signs one with every group of events it commits.

Save it: 'tccctl ledger consistency SIZE' later proves that the log still
extends it, which is how a rewritten log is caught. --keep (admins) also
has tccd keep it, so that the consistency proof document carries it.`,
		Example: `  tccctl ledger checkpoint > cp-$(date +%F).txt`,
		Args:    args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cp, err := g.client().LedgerCheckpoint(cmd.Context(), keep)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), cp)
			}
			fmt.Fprint(cmd.OutOrStdout(), cp.Checkpoint)
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "have tccd keep this checkpoint too (admins)")
	addJSON(cmd, g)
	return cmd
}

func newLedgerTailCmd(g *globals) *cobra.Command {
	var (
		q     api.EventQuery
		from  int64
		types string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the latest events (-f: and follow new ones)",
		Long: `Print the last N events of the ledger, oldest first, one per line; with
--from, every event from that seq on. -f keeps printing new events as they
are appended until interrupted. --json prints each event exactly as stored
(one JSON object per line).`,
		Example: `  tccctl ledger tail -n 50
  tccctl ledger tail -f --type call.end,call.aborted
  tccctl ledger tail --trace 0190b6a2-… --json`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from >= 0 {
				f := uint64(from)
				q.From = &f
			}
			if types != "" {
				q.Types = strings.Split(types, ",")
			}
			body, err := g.client().LedgerEvents(cmd.Context(), q)
			if err != nil {
				return err
			}
			defer body.Close()
			out := cmd.OutOrStdout()
			if !g.json {
				fmt.Fprintf(out, "%-6s  %-23s  %-14s  %-16s  %-10s  %-14s  %s\n", "SEQ", "TIME", "TYPE", "CELL", "VERDICT", "CALLER", "TENANT")
			}
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 64<<10), audit.MaxEventSize+1)
			for sc.Scan() {
				if g.json {
					fmt.Fprintf(out, "%s\n", sc.Bytes())
					continue
				}
				ev, err := audit.DecodeEvent(sc.Bytes())
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%-6d  %-23s  %-14s  %-16s  %-10s  %-14s  %s\n", ev.Seq, nsWhen(ev.TimeNS), ev.Type, orDash(ev.Cell), orDash(ev.Verdict), orDash(ev.Caller), orDash(ev.Tenant))
			}
			if err := sc.Err(); err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("reading events: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&q.Last, "lines", "n", 20, "how many of the latest events")
	f.Int64Var(&from, "from", -1, "print every event from this seq on (instead of the last N)")
	f.BoolVarP(&q.Follow, "follow", "f", false, "keep printing new events")
	f.StringVar(&types, "type", "", "only these event types (comma-separated)")
	f.StringVar(&q.Cell, "cell", "", "only events of this cell name")
	f.StringVar(&q.Trace, "trace", "", "only events of this trace id")
	f.StringVar(&q.Tenant, "tenant", "", "only this tenant's events (admins)")
	addJSON(cmd, g)
	return cmd
}

func nsWhen(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).Local().Format("2006-01-02 15:04:05.000")
}

func newLedgerShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one event in full",
		Long:  `Print the event at SEQ. --json prints it exactly as stored: its Merkle leaf.`,
		Args:  args("SEQ"),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseSeq(a[0])
			if err != nil {
				return err
			}
			raw, err := g.client().LedgerEvent(cmd.Context(), seq)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				_, err := out.Write(raw)
				return err
			}
			ev, err := audit.DecodeEvent(bytes.TrimSpace(raw))
			if err != nil {
				return err
			}
			w := table(out)
			printEvent(w, ev)
			return w.Flush()
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printEvent(w io.Writer, ev *audit.Event) {
	kv(w, "seq", ev.Seq)
	kv(w, "time", fmt.Sprintf("%s (%d ns)", nsWhen(ev.TimeNS), ev.TimeNS))
	kv(w, "type", ev.Type)
	opt := func(k, v string) {
		if v != "" {
			kv(w, k, v)
		}
	}
	opt("trace_id", ev.TraceID)
	opt("tenant", ev.Tenant)
	opt("caller", ev.Caller)
	opt("cell", ev.Cell)
	opt("identity", string(ev.Identity))
	opt("parent", string(ev.Parent))
	if ev.Ref != nil {
		kv(w, "ref", *ev.Ref)
	}
	opt("input_sha256", ev.InputSHA256)
	opt("output_sha256", ev.OutputSHA256)
	opt("verdict", ev.Verdict)
	opt("message", ev.Message)
	if u := ev.Usage; u != nil {
		s := fmt.Sprintf("wall %v, cpu %v, peak memory %d bytes, exit %d", time.Duration(u.WallNS), time.Duration(u.CPUNS), u.PeakMemoryBytes, u.ExitCode)
		if u.Signal != "" {
			s += ", " + u.Signal
		}
		kv(w, "usage", s)
	}
	opt("violations", strings.Join(ev.Violations, ", "))
	if wp := ev.Wipe; wp != nil {
		s := fmt.Sprintf("clean in %v", time.Duration(wp.ElapsedNS))
		if !wp.Clean {
			s = fmt.Sprintf("NOT CLEAN after %v: %s", time.Duration(wp.ElapsedNS), strings.Join(wp.Leftovers, "; "))
		}
		kv(w, "wipe", s)
	}
	opt("monitor", string(ev.Monitor))
	for _, k := range slices.Sorted(maps.Keys(ev.Attrs)) {
		kv(w, "attrs."+k, ev.Attrs[k])
	}
}

func newLedgerProveCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prove SEQ",
		Short: "Prove that an event is in the log (inclusion proof)",
		Long: `Print a self-contained proof that the event at SEQ is in the log: the
event's exact bytes, its RFC 6962 audit path and the signed checkpoint the
path leads to (the latest, which covers every event).

--json prints the proof document (format tcc-proof/v1, one line; see
docs/notes/003-ledger.md): save it and check it anywhere with
'tccctl ledger verify proof.json --key ledger.pub', or with any RFC 6962
verifier: tlog.CheckRecord(proof, tree_size, root, seq, RecordHash(event)).
Do not reformat it: the bytes of its "event" member are the leaf.`,
		Example: `  tccctl ledger prove 42 --json > proof-42.json
  tccctl ledger verify proof-42.json --key ledger.pub`,
		Args: args("SEQ"),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseSeq(a[0])
			if err != nil {
				return err
			}
			doc, err := g.client().LedgerProof(cmd.Context(), seq)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				_, err := out.Write(doc)
				return err
			}
			p, err := audit.ParseInclusionProof(doc)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "event %d in the tree of size %d\n\n%s\n\nleaf hash (RFC 6962): %s\naudit path (%d hashes):\n", p.Seq, p.TreeSize, p.Event, b64(tlog.RecordHash(p.Event)), len(p.Proof))
			for _, h := range p.Proof {
				fmt.Fprintf(out, "  %s\n", b64(h))
			}
			fmt.Fprintf(out, "\ncheckpoint:\n%s", p.Checkpoint)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func newLedgerConsistencyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consistency OLD_SIZE",
		Short: "Prove that the log extends an older checkpoint (consistency proof)",
		Long: `Print the proof that the log of the latest checkpoint extends the log of
OLD_SIZE events: none of those events was changed, dropped or reordered
since. Give the size of a checkpoint you saved earlier; the proof is checked
here against the checkpoints' root hashes. --json prints the document
(format tcc-consistency/v1); 'tccctl ledger verify doc.json --key K --old
YOUR-SAVED-CHECKPOINT' also checks the signatures, against your own copy.`,
		Example: `  tccctl ledger consistency 1200 --json > cons.json
  tccctl ledger verify cons.json --key ledger.pub --old cp-2026-01-01.txt`,
		Args: args("OLD_SIZE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			old, err := parseSeq(a[0])
			if err != nil {
				return err
			}
			doc, err := g.client().LedgerConsistency(cmd.Context(), old)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				_, err := out.Write(doc)
				return err
			}
			p, err := audit.ParseConsistencyProof(doc)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "tree of size %d extends the tree of size %d\nproof (%d hashes):\n", p.NewSize, p.OldSize, len(p.Proof))
			for _, h := range p.Proof {
				fmt.Fprintf(out, "  %s\n", b64(h))
			}
			fmt.Fprintf(out, "\nnew checkpoint:\n%s", p.NewCheckpoint)
			if p.OldCheckpoint == "" {
				fmt.Fprintf(out, "\nno checkpoint of size %d is stored: check the proof against the one you saved (--json, then ledger verify --old)\n", p.OldSize)
				return nil
			}
			fmt.Fprintf(out, "\nold checkpoint (as stored by tccd):\n%s", p.OldCheckpoint)
			if err := checkTreeOnly(p); err != nil {
				return &exitError{code: exitVerification, err: err}
			}
			fmt.Fprintln(out, "\nproof checked against the two root hashes (signatures not checked: use ledger verify --key)")
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

// checkTreeOnly checks a consistency proof's hashes without a key.
func checkTreeOnly(p *audit.ConsistencyProof) error {
	oldCP, err := audit.UnverifiedCheckpoint([]byte(p.OldCheckpoint))
	if err != nil {
		return err
	}
	newCP, err := audit.UnverifiedCheckpoint([]byte(p.NewCheckpoint))
	if err != nil {
		return err
	}
	return audit.VerifyConsistency(oldCP, newCP, tlog.TreeProof(p.Proof))
}

func newLedgerExportCmd(g *globals) *cobra.Command {
	var (
		q   api.ExportQuery
		out string
	)
	cmd := &cobra.Command{
		Use:   "export [--from SEQ] [--to SEQ] [--tenant T] [-o FILE]",
		Short: "Export events as signed JSON Lines for offline verification",
		Long: `Write an export of the ledger (format tcc-audit/v1, JSON Lines): a header
with the latest checkpoint (tccd keeps it), one line per event with its
inclusion proof in that checkpoint, and a trailer signed with the ledger
key over every line above it. 'tccctl ledger verify FILE --key K' checks it
with no daemon: a changed, removed, added, reordered or truncated line is
found and named.

--from and --to select seqs from ≤ seq < to (default: the whole log).
--tenant exports one tenant's events; the proofs reveal only hashes of
other events. Callers who are not admins always export their own tenant.`,
		Example: `  tccctl ledger export > audit.jsonl
  tccctl ledger export --tenant acme --from 1000 -o acme.jsonl
  tccctl ledger verify audit.jsonl --key ledger.pub`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			body, err := g.client().LedgerExport(cmd.Context(), q)
			if err != nil {
				return err
			}
			defer body.Close()
			if out == "" {
				return copyExport(cmd.OutOrStdout(), body)
			}
			// Written beside the target and renamed when whole, so FILE is
			// either a complete export or untouched.
			f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			defer os.Remove(f.Name()) // fails harmlessly after the rename
			err = copyExport(f, body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Rename(f.Name(), out)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&q.From, "from", 0, "first seq to export")
	f.Uint64Var(&q.To, "to", 0, "export seqs before this one (default: up to the checkpoint)")
	f.StringVar(&q.Tenant, "tenant", "", "export only this tenant's events")
	f.StringVarP(&out, "output", "o", "", "write to FILE (mode 0600), only once the export is whole, instead of standard output")
	return cmd
}

// copyExport copies an export stream and checks that it ended with its
// trailer: otherwise tccd stopped half-way and the copy is useless (it
// would not verify either).
func copyExport(w io.Writer, body io.Reader) error {
	var last lastLine
	if _, err := io.Copy(io.MultiWriter(w, &last), body); err != nil {
		return fmt.Errorf("export: %w; tccd's log says why. Run the export again", err)
	}
	var t struct{ Kind string }
	if json.Unmarshal(last.line(), &t) != nil || t.Kind != "end" {
		return errors.New("export: the stream ended before its signed trailer; tccd's log says why. Run the export again")
	}
	return nil
}

// lastLine remembers the last complete line written through it.
type lastLine struct{ buf, done []byte }

func (l *lastLine) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\n' {
			l.done, l.buf = l.buf, l.done[:0]
			continue
		}
		if len(l.buf) < 1<<20 {
			l.buf = append(l.buf, c)
		}
	}
	return len(p), nil
}

func (l *lastLine) line() []byte {
	if len(l.buf) > 0 {
		return l.buf // a line without its newline: not a trailer
	}
	return l.done
}

func newLedgerVerifyCmd(g *globals) *cobra.Command {
	var keyArg, oldPath string
	cmd := &cobra.Command{
		Use:   "verify FILE --key KEY",
		Short: "Verify an export or a proof offline (no daemon, no network)",
		Long: `Verify, with nothing but the ledger's verifier key, one of:

  an export (tccctl ledger export): the checkpoint's signature, every
    event's inclusion proof, the seqs (contiguous for a whole-log export,
    increasing for a tenant's), and the signed trailer over every line;
  an inclusion proof (tccctl ledger prove --json);
  a consistency proof (tccctl ledger consistency --json); --old gives the
    checkpoint you saved yourself, to check against instead of tccd's copy.

KEY is a .pub file (tccctl ledger key > ledger.pub) or the key text. Every
problem is printed as FILE:LINE: ... . Exit status: 0 verified, 4
verification failed, 1 the file could not be read.`,
		Example: `  tccctl ledger verify audit.jsonl --key ledger.pub`,
		Args:    args("FILE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			if keyArg == "" {
				return usageErrorf("ledger verify: --key is required (the ledger's verifier key: tccctl ledger key)")
			}
			vs, err := loadVerifiers(keyArg)
			if err != nil {
				return err
			}
			var old []byte
			if oldPath != "" {
				if old, err = os.ReadFile(oldPath); err != nil {
					return err
				}
			}
			rep, err := verifyFile(a[0], vs, old)
			out := cmd.OutOrStdout()
			var ve *audit.VerifyError
			switch {
			case err == nil:
			case errors.As(err, &ve):
				if g.json {
					printJSON(out, map[string]any{"ok": false, "file": ve.File, "problems": ve.Problems, "more": ve.More})
				}
				return &exitError{code: exitVerification, err: fmt.Errorf("%w\nverification FAILED", err)}
			case errors.Is(err, audit.ErrBadProof), errors.Is(err, audit.ErrBadCheckpoint), errors.Is(err, audit.ErrMalformed):
				if g.json {
					printJSON(out, map[string]any{"ok": false, "file": a[0], "problems": []audit.Problem{{Line: 1, Msg: err.Error()}}})
				}
				return &exitError{code: exitVerification, err: fmt.Errorf("%s: %w\nverification FAILED", a[0], err)}
			default:
				return err
			}
			if g.json {
				return printJSON(out, map[string]any{"ok": true, "file": a[0], "report": rep})
			}
			switch rep.Kind {
			case "export":
				scope := "the whole log"
				if rep.Tenant != "" {
					scope = "tenant " + rep.Tenant
				}
				fmt.Fprintf(out, "%s: OK: %d events of %s, seq %d..%d, in %s tree of size %d (root %s); checkpoint and export signed by %s\n",
					a[0], rep.Events, scope, rep.From, int64(rep.To)-1, rep.Origin, rep.TreeSize, rep.Root, rep.Origin)
			case "proof":
				fmt.Fprintf(out, "%s: OK: event seq %d is in %s tree of size %d (root %s)\n", a[0], rep.From, rep.Origin, rep.TreeSize, rep.Root)
			case "consistency":
				fmt.Fprintf(out, "%s: OK: %s tree of size %d (root %s) extends the tree of size %d\n", a[0], rep.Origin, rep.TreeSize, rep.Root, rep.From)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyArg, "key", "", "the ledger's verifier key: a .pub file or the key itself")
	cmd.Flags().StringVar(&oldPath, "old", "", "consistency proofs: your saved checkpoint of the old size")
	addJSON(cmd, g)
	return cmd
}

func loadVerifiers(arg string) (note.Verifiers, error) {
	if _, err := os.Stat(arg); err == nil {
		v, err := keys.LoadVerifier(arg)
		if err != nil {
			return nil, err
		}
		return note.VerifierList(v), nil
	}
	v, err := note.NewVerifier(strings.TrimSpace(arg))
	if err != nil {
		return nil, usageErrorf("--key %q: no such file, and not a verifier key (NAME+HASH+KEY): %v", arg, err)
	}
	return note.VerifierList(v), nil
}

// verifyFile tells an export (its first line is a header) from a proof
// document and verifies it.
func verifyFile(path string, vs note.Verifiers, old []byte) (*audit.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	first, _ := br.Peek(64 << 10)
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	var head struct{ Kind, Format string }
	if json.Unmarshal(first, &head) == nil && head.Kind == "header" {
		return audit.VerifyExport(br, path, vs)
	}
	doc, err := io.ReadAll(io.LimitReader(br, 4*audit.MaxEventSize))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return nil, fmt.Errorf("%w: not an export, a proof or a consistency proof: %v", audit.ErrMalformed, err)
	}
	switch head.Format {
	case audit.FormatProof:
		p, err := audit.ParseInclusionProof(doc)
		if err != nil {
			return nil, err
		}
		cp, _, err := p.Verify(vs)
		if err != nil {
			return nil, err
		}
		return &audit.Report{Kind: "proof", Origin: cp.Origin, TreeSize: cp.Size, Root: b64(cp.Hash), From: p.Seq, To: p.Seq + 1, Events: 1}, nil
	case audit.FormatConsistency:
		p, err := audit.ParseConsistencyProof(doc)
		if err != nil {
			return nil, err
		}
		_, newCP, err := p.Verify(vs, old)
		if err != nil {
			return nil, err
		}
		return &audit.Report{Kind: "consistency", Origin: newCP.Origin, TreeSize: newCP.Size, Root: b64(newCP.Hash), From: p.OldSize, To: p.NewSize}, nil
	}
	return nil, fmt.Errorf("%w: format %q is not one this verifier reads (%s, %s, %s)", audit.ErrMalformed, head.Format, audit.FormatExport, audit.FormatProof, audit.FormatConsistency)
}

func newLedgerReplayCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay SEQ",
		Short: "Run a recorded call again and compare its output",
		Long: `Run the call recorded at SEQ (its call.begin or call.end) again: the same
cell identity, even if the name's head has moved since (refused if it was
revoked), on the same input, kept in tccd's blob store, in a fresh sandbox.
The replay is a call of its own (call.begin, call.end) and a call.replay
event records whether its verdict and output hash match the original.

A cell whose manifest declares nondeterminism (random, time, network) may
differ: that is reported as "nondeterministic by contract", not a failure.
When the input was evicted (tccd --blob-cap, --blob-retention), the replay
is refused and says so.

Exit status: 0 reproduced (or differs by contract), 4 a deterministic cell
did not reproduce, 6 the replay's verdict was not ok.`,
		Example: `  tccctl ledger replay 42`,
		Args:    args("SEQ"),
		RunE: func(cmd *cobra.Command, a []string) error {
			seq, err := parseSeq(a[0])
			if err != nil {
				return err
			}
			r, err := g.client().LedgerReplay(cmd.Context(), seq)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				if err := printJSON(out, r); err != nil {
					return err
				}
			} else {
				w := table(out)
				kv(w, "cell", fmt.Sprintf("%s %s", r.Cell, r.Identity))
				kv(w, "input", "sha256:"+r.InputSHA256)
				kv(w, "original", fmt.Sprintf("seq %d..%d, verdict %s, output %s", r.Original.BeginSeq, r.Original.EndSeq, r.Original.Verdict, orDash(r.Original.OutputSHA256)))
				kv(w, "replay", fmt.Sprintf("seq %d..%d, verdict %s, output %s", r.Replay.BeginSeq, r.Replay.EndSeq, r.Replay.Verdict, orDash(r.Replay.OutputSHA256)))
				kv(w, "match", r.Match)
				kv(w, "determinism", r.Determinism)
				kv(w, "recorded", fmt.Sprintf("call.replay at seq %d (trace %s)", r.Seq, r.TraceID))
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintln(out, r.Message)
			}
			switch {
			case !r.Match && r.Determinism == api.Deterministic:
				return &exitError{code: exitVerification, err: errors.New(r.Message)}
			case r.Replay.Verdict != "ok":
				return &exitError{code: exitCallFailed, err: fmt.Errorf("the replay ended with verdict %s", r.Replay.Verdict)}
			}
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}
