package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/kernel/outcome"
)

func newCellProfileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile NAME|IDENTITY",
		Short: "Show a cell's learned behaviour baseline",
		Long: `Show the behaviour baseline the eBPF monitor learnt for a cell identity: from
its examples at registration (the probation run, each example 3 times), refined
by later calls that ended ok without deviating. Syscall counts are totals over
the runs and per run; pairs are distinct consecutive syscalls of one thread;
entropy is the band of output entropy seen, in bits per byte.

Runs are judged against this baseline while they run; the manifest's monitor
policy (log, throttle, halt) says what happens when one deviates.`,
		Example: `  tccctl cell profile sha256
  tccctl cell profile sha256:3f2a --json`,
		Args: args("NAME|IDENTITY"),
		RunE: func(cmd *cobra.Command, a []string) error {
			p, raw, err := g.client().Profile(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.json {
				return printJSON(out, raw)
			}
			printProfile(out, p)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printProfile(out io.Writer, p *api.Profile) {
	w := table(out)
	kv(w, "cell", p.Name+" "+p.Identity)
	mon := "available"
	if !p.Monitor.Available {
		mon = "unavailable: " + p.Monitor.Reason
	}
	kv(w, "monitor", mon)
	kv(w, "policy", fmt.Sprintf("%s (acts at score %g)", p.Policy, p.Threshold))
	if !p.Learned {
		kv(w, "baseline", "none (no examples, or registered without the monitor): only what is wrong for any cell is judged")
		w.Flush()
		return
	}
	rec := "not yet recorded"
	if p.RecordedSeq > 0 {
		rec = fmt.Sprintf("recorded at event %d", p.RecordedSeq)
	}
	kv(w, "baseline", fmt.Sprintf("%d runs (%d at probation, %d refined; %s, %d since)", p.Runs, p.ProbationRuns, p.Runs-p.ProbationRuns, rec, p.UnrecordedRuns))
	kv(w, "pairs", fmt.Sprintf("%d distinct", p.DistinctPairs))
	ent := "no run wrote enough to judge"
	if p.Entropy != nil {
		ent = fmt.Sprintf("%.2f–%.2f bits/byte", p.Entropy.Min, p.Entropy.Max)
	}
	if p.DeclaredEntropy != nil {
		ent += fmt.Sprintf(" (declared %.2g–%.2g)", p.DeclaredEntropy.Min, p.DeclaredEntropy.Max)
	}
	kv(w, "entropy", ent)
	if m := p.Max; m != nil {
		kv(w, "largest run", fmt.Sprintf("%d syscalls, %d bytes written, %d threads, %d forks, %d execs, CPU %s, peak memory %s",
			m.Syscalls, m.BytesWritten, m.Threads, m.Forks, m.Execs, time.Duration(m.CPUNS).Round(100*time.Microsecond), iec(m.PeakMemory)))
	}
	w.Flush()
	fmt.Fprintln(out)
	w = table(out)
	fmt.Fprintln(w, "SYSCALL\tNR\tTOTAL\tPER RUN")
	for _, s := range p.Syscalls {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.1f\n", s.Name, s.Nr, s.Total, s.PerRun)
	}
	w.Flush()
}

func iec(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newCellAdviseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "advise CAPSULE",
		Short: "Draft a cell's syscall allowance from its examples",
		Long: `Run the examples of a capsule that is not registered (signed or not) under a
permissive seccomp profile — everything a contract could be granted, nothing
that can never be granted — watch them with the eBPF monitor, and print the
smallest syscalls block that allows what they did: a draft for cell.yaml.

The choice (a minimal set cover): each group or extra syscall costs one line,
and each syscall a group would grant unused costs half a line; so a group is
chosen only when it replaces more extra syscalls than 1 plus half of what it
grants unused. Syscalls every cell gets (the base) need no line.

A directory is packed first (as tccctl cell pack does: cell.yaml's files are
rewritten). The block goes to stdout, the explanation to stderr. Admin only:
the daemon runs the capsule's code.`,
		Example: `  tccctl cell advise ./mycell
  tccctl cell advise mycell.cell --json`,
		Args: args("CAPSULE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			if fi, err := os.Stat(a[0]); err == nil && fi.IsDir() {
				p, err := capsule.Pack(a[0])
				if err != nil {
					return verificationError(err)
				}
				for _, w := range p.Warnings {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
				}
			}
			c, err := capsule.Open(a[0])
			if err != nil {
				return verificationError(err)
			}
			var buf bytes.Buffer
			if err := capsule.WriteTar(c, &buf); err != nil {
				return err
			}
			var raw json.RawMessage
			if err := g.client().Do(cmd.Context(), http.MethodPost, "/v1/advise", &buf, "application/x-tar", &raw); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			var v api.Advice
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("decode advice: %w", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), v.YAML)
			printAdvice(cmd.ErrOrStderr(), &v)
			return nil
		},
	}
	addJSON(cmd, g)
	return cmd
}

func printAdvice(out io.Writer, v *api.Advice) {
	fmt.Fprintf(out, "\n%s %s: %d example runs under the permissive profile\n", v.Name, v.Identity, len(v.Examples))
	for _, e := range v.Examples {
		if e.Verdict != outcome.OK {
			fmt.Fprintf(out, "  example %s (run %d): %s: %s\n", e.Name, e.Run, e.Verdict, e.Message)
		}
	}
	for _, grp := range v.Syscalls.Groups {
		fmt.Fprintf(out, "  %s covers %s\n", grp, strings.Join(v.Syscalls.Covers[grp], " "))
	}
	if len(v.Syscalls.Unused) > 0 {
		fmt.Fprintf(out, "  the groups also grant, unused: %s\n", strings.Join(v.Syscalls.Unused, " "))
	}
	for sc, why := range v.Syscalls.Forbidden {
		fmt.Fprintf(out, "  it calls %s, which can never be granted (%s): it cannot be registered while it does\n", sc, why)
	}
	if len(v.Syscalls.Unknown) > 0 {
		fmt.Fprintf(out, "  unknown to this daemon's seccomp library, cannot be granted: %s\n", strings.Join(v.Syscalls.Unknown, " "))
	}
	if len(v.Granted) > 0 {
		fmt.Fprintf(out, "  granted outright after a kill on them (beyond their probe answers): %s\n", strings.Join(v.Granted, " "))
	}
	if len(v.Missing) > 0 {
		fmt.Fprintf(out, "  cell.yaml as written lacks: %s\n", strings.Join(v.Missing, " "))
	}
	if len(v.Unneeded) > 0 {
		fmt.Fprintf(out, "  cell.yaml grants as extra, never used by the examples: %s\n", strings.Join(v.Unneeded, " "))
	}
	fmt.Fprintf(out, "rule: %s\n", v.Rule)
}
