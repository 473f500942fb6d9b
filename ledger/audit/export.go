package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// An export (FormatExport) is JSON Lines, one object per line, each with a
// "kind":
//
//	line 1       {"kind":"header", ...}   Header: range, tenant, signed checkpoint
//	lines 2..n   {"kind":"event", ...}    Record: one event and its inclusion proof
//	last line    {"kind":"end", ...}      Trailer: a signed note over the lines above
//
// docs/notes/003-ledger.md describes the format and what Verify proves.

// Header is the first line of an export.
type Header struct {
	Kind       string `json:"kind"`   // "header"
	Format     string `json:"format"` // FormatExport
	Origin     string `json:"origin"`
	TreeSize   uint64 `json:"tree_size"` // size of the checkpoint every proof leads to
	From       uint64 `json:"from"`      // first seq of the range
	To         uint64 `json:"to"`        // end of the range (exclusive), <= TreeSize
	Tenant     string `json:"tenant,omitempty"`
	ExportedNS int64  `json:"exported_ns"`
	Checkpoint string `json:"checkpoint"` // signed note
}

// Record is one event line. Event holds the leaf bytes verbatim. Prev is
// the seq of the event on the line before (absent on the first event
// line): it lets a verifier name the place where a line was removed from a
// tenant export, whose seqs have gaps.
type Record struct {
	Kind  string          `json:"kind"` // "event"
	Prev  *uint64         `json:"prev,omitempty"`
	Event json.RawMessage `json:"event"`
	Proof Hashes          `json:"proof"`
}

// Trailer is the last line. Signature is a note, signed by the log's key,
// whose text is
//
//	tcc-audit-export/v1
//	<origin>
//	<lines before the trailer>
//	<events>
//	<hex SHA-256 of every byte before the trailer line>
type Trailer struct {
	Kind      string `json:"kind"` // "end"
	Lines     int    `json:"lines"`
	Events    int    `json:"events"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
}

const (
	kindHeader = "header"
	kindEvent  = "event"
	kindEnd    = "end"

	trailerTitle = "tcc-audit-export/v1"

	// maxLine bounds one line: the largest event plus a proof.
	maxLine = MaxEventSize + 64<<10
)

func trailerText(origin string, lines, events int, sum string) string {
	return fmt.Sprintf("%s\n%s\n%d\n%d\n%s\n", trailerTitle, origin, lines, events, sum)
}

// Writer writes an export.
type Writer struct {
	w      io.Writer
	sum    hash.Hash
	signer note.Signer
	origin string
	lines  int
	events int
	prev   *uint64
	closed bool
}

// NewWriter writes the header line. The signer must be the log's
// checkpoint key: the trailer is signed with it.
func NewWriter(w io.Writer, signer note.Signer, h Header) (*Writer, error) {
	h.Kind, h.Format = kindHeader, FormatExport
	if h.Origin != signer.Name() {
		return nil, fmt.Errorf("export: origin %q is not the signer's name %q", h.Origin, signer.Name())
	}
	ew := &Writer{w: w, sum: sha256.New(), signer: signer, origin: h.Origin}
	line, err := marshal(&h)
	if err != nil {
		return nil, err
	}
	return ew, ew.line(line)
}

func (w *Writer) line(b []byte) error {
	b = append(b, '\n')
	w.sum.Write(b)
	w.lines++
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Event writes one event line: leaf is the stored event (seq is its seq)
// and proof its inclusion proof in the header's checkpoint.
func (w *Writer) Event(leaf []byte, seq uint64, proof tlog.RecordProof) error {
	// Built by hand: json.Marshal would re-escape the leaf's bytes.
	var b bytes.Buffer
	b.WriteString(`{"kind":"event",`)
	if w.prev != nil {
		b.WriteString(`"prev":`)
		b.WriteString(strconv.FormatUint(*w.prev, 10))
		b.WriteByte(',')
	}
	b.WriteString(`"event":`)
	b.Write(leaf)
	p, err := marshal(Hashes(proof))
	if err != nil {
		return err
	}
	b.WriteString(`,"proof":`)
	b.Write(p)
	b.WriteByte('}')
	w.prev = &seq
	w.events++
	return w.line(b.Bytes())
}

// Close signs and writes the trailer. Without it the export does not
// verify, so a failed or cut-short export is never mistaken for a whole
// one.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	sum := hex.EncodeToString(w.sum.Sum(nil))
	signed, err := note.Sign(&note.Note{Text: trailerText(w.origin, w.lines, w.events, sum)}, w.signer)
	if err != nil {
		return fmt.Errorf("export: sign: %w", err)
	}
	line, err := marshal(&Trailer{Kind: kindEnd, Lines: w.lines, Events: w.events, SHA256: sum, Signature: string(signed)})
	if err != nil {
		return err
	}
	if _, err := w.w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// Report is what a successful verification established.
type Report struct {
	Kind     string `json:"kind"` // "export", "proof" or "consistency"
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	Root     string `json:"root"` // base64, as in the checkpoint
	From     uint64 `json:"from"`
	To       uint64 `json:"to"`
	Tenant   string `json:"tenant,omitempty"`
	Events   int    `json:"events"`
}

// Problem is one verification failure, located by line (1-based) and, for
// event lines, by the event's seq.
type Problem struct {
	Line int     `json:"line"`
	Seq  *uint64 `json:"seq,omitempty"`
	Msg  string  `json:"message"`
}

// VerifyError lists every problem found, in file order.
type VerifyError struct {
	File     string    `json:"file"`
	Problems []Problem `json:"problems"`
	More     int       `json:"more,omitempty"` // problems not listed
}

// maxProblems bounds a VerifyError's list.
const maxProblems = 100

func (e *VerifyError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		if p.Seq != nil {
			fmt.Fprintf(&b, "event seq %d: ", *p.Seq)
		}
		b.WriteString(p.Msg)
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n%s: … and %d more problems", e.File, e.More)
	}
	return b.String()
}

func (e *VerifyError) Unwrap() error { return ErrVerification }

func (e *VerifyError) add(line int, seq *uint64, format string, args ...any) {
	if len(e.Problems) >= maxProblems {
		e.More++
		return
	}
	e.Problems = append(e.Problems, Problem{Line: line, Seq: seq, Msg: fmt.Sprintf(format, args...)})
}

// VerifyExport reads an export and checks, needing nothing but the log's
// verifier key:
//   - the header's checkpoint is signed by a key named as its origin;
//   - every event line holds a canonical event whose inclusion proof leads
//     to that checkpoint (so no event was changed or invented);
//   - the events lie in the declared range, in strictly increasing seq
//     order, belong to the declared tenant if any, and, when no tenant is
//     declared, are exactly the seqs from..to-1 (none dropped, none
//     reordered);
//   - the trailer's signature covers every byte of the lines before it
//     (so no line was removed, added, reordered or changed, and the file
//     was not cut short).
//
// name is used in messages ("name:LINE: ..."). A verification failure is a
// *VerifyError (errors.Is(err, ErrVerification)); other errors are I/O.
func VerifyExport(r io.Reader, name string, verifiers note.Verifiers) (*Report, error) {
	v := &exportVerifier{
		verr:      &VerifyError{File: name},
		verifiers: verifiers,
		sum:       sha256.New(),
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, complete, err := readLine(br)
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		v.n++
		if !complete {
			v.verr.add(v.n, nil, "the file ends in the middle of this line: it was truncated")
			break
		}
		if fatal := v.line(line); fatal {
			return nil, v.verr
		}
	}
	v.finish()
	if len(v.verr.Problems) > 0 {
		return nil, v.verr
	}
	return &Report{
		Kind: "export", Origin: v.cp.Origin, TreeSize: v.cp.Size, Root: b64(v.cp.Hash),
		From: v.hdr.From, To: v.hdr.To, Tenant: v.hdr.Tenant, Events: v.events,
	}, nil
}

type exportVerifier struct {
	verr      *VerifyError
	verifiers note.Verifiers
	sum       hash.Hash

	n       int // current line
	hdr     Header
	cp      Checkpoint
	events  int
	next    uint64  // next expected seq (unfiltered exports)
	last    *uint64 // seq of the previous event line
	trailer int     // line of the trailer, 0 until seen
}

// line checks one complete line; true means verification cannot go on.
func (v *exportVerifier) line(line []byte) (fatal bool) {
	if v.trailer > 0 {
		v.verr.add(v.n, nil, "data after the signed trailer (line %d): lines were appended", v.trailer)
		return false
	}
	var k struct {
		Kind string `json:"kind"`
	}
	kerr := json.Unmarshal(line, &k)
	if v.n == 1 {
		v.sum.Write(line)
		v.sum.Write([]byte{'\n'})
		if kerr != nil || k.Kind != kindHeader {
			v.verr.add(1, nil, "not a %s export: the first line must be its header", FormatExport)
			return true
		}
		return v.header(line)
	}
	if kerr == nil && k.Kind == kindEnd {
		v.trailer = v.n
		v.checkTrailer(line)
		return false
	}
	v.sum.Write(line)
	v.sum.Write([]byte{'\n'})
	switch {
	case kerr != nil:
		v.verr.add(v.n, nil, "not a JSON object: %v", kerr)
	case k.Kind == kindEvent:
		v.event(line)
	default:
		v.verr.add(v.n, nil, "unknown line kind %q", k.Kind)
	}
	return false
}

// header checks the first line; true means nothing else can be checked.
func (v *exportVerifier) header(line []byte) (fatal bool) {
	if err := unmarshalStrict(line, &v.hdr); err != nil {
		v.verr.add(1, nil, "header: %v", err)
		return true
	}
	h := &v.hdr
	if h.Format != FormatExport {
		v.verr.add(1, nil, "format %q; this verifier reads %q", h.Format, FormatExport)
		return true
	}
	cp, err := VerifyCheckpoint([]byte(h.Checkpoint), v.verifiers)
	if err != nil {
		v.verr.add(1, nil, "checkpoint does not verify with the given key: %v", err)
		// Go on with the unverified body to locate other problems.
		if cp, err = UnverifiedCheckpoint([]byte(h.Checkpoint)); err != nil {
			return true
		}
	}
	v.cp = cp
	switch {
	case h.Origin != cp.Origin:
		v.verr.add(1, nil, "header origin %q differs from the checkpoint's %q", h.Origin, cp.Origin)
	case h.TreeSize != cp.Size:
		v.verr.add(1, nil, "header tree_size %d differs from the checkpoint's size %d", h.TreeSize, cp.Size)
	case h.From > h.To || h.To > cp.Size:
		v.verr.add(1, nil, "range from %d to %d does not fit in the checkpoint's tree of size %d", h.From, h.To, cp.Size)
	}
	v.next = h.From
	return false
}

func (v *exportVerifier) event(line []byte) {
	var rec Record
	if err := unmarshalStrict(line, &rec); err != nil {
		v.verr.add(v.n, nil, "event line: %v", err)
		return
	}
	v.events++
	ev, err := DecodeLeaf(rec.Event)
	if err != nil {
		v.verr.add(v.n, nil, "%v", err)
		return
	}
	seq := ev.Seq
	at := &seq
	last := v.last
	v.last = at
	h := &v.hdr
	switch {
	case VerifyInclusion(v.cp, seq, rec.Event, tlog.RecordProof(rec.Proof)) != nil:
		v.verr.add(v.n, at, "inclusion proof does not verify against checkpoint size %d: the event or its proof was changed", v.cp.Size)
	case seq < h.From || seq >= h.To:
		v.verr.add(v.n, at, "outside the exported range %d..%d", h.From, int64(h.To)-1)
	case h.Tenant != "" && ev.Tenant != h.Tenant:
		v.verr.add(v.n, at, "belongs to tenant %q, not to the exported tenant %q", ev.Tenant, h.Tenant)
	case last != nil && seq <= *last:
		v.verr.add(v.n, at, "out of order: it follows seq %d; lines were reordered or repeated", *last)
	case h.Tenant == "" && seq != v.next:
		if seq > v.next {
			v.verr.add(v.n, at, "%s missing before this line (lines were removed)", seqRange(v.next, seq))
		}
	case last == nil && rec.Prev != nil:
		v.verr.add(v.n, at, "the line says it follows seq %d, but it is the first event line: lines before it were removed", *rec.Prev)
	case last != nil && (rec.Prev == nil || *rec.Prev != *last):
		v.verr.add(v.n, at, "the line says it follows seq %s, but the line before holds seq %d: lines were removed or reordered", optSeq(rec.Prev), *last)
	}
	if seq+1 > v.next {
		v.next = seq + 1
	}
}

// checkTrailer checks the last line. It is the one line the trailer's
// hash does not cover, so it must be exactly what Writer.Close writes: the
// canonical encoding, with one signature in canonical base64. Otherwise
// the same export would have many encodings that all verify.
func (v *exportVerifier) checkTrailer(line []byte) {
	var t Trailer
	if err := unmarshalStrict(line, &t); err != nil {
		v.verr.add(v.n, nil, "trailer: %v", err)
		return
	}
	if enc, err := marshal(&t); err != nil || !bytes.Equal(enc, line) || !oneSignature(t.Signature) {
		v.verr.add(v.n, nil, "the trailer line is not in the form tccd writes (reformatted, or a signature added)")
		return
	}
	n, err := note.Open([]byte(t.Signature), v.verifiers)
	if err != nil {
		v.verr.add(v.n, nil, "trailer signature does not verify with the given key: %v", err)
		return
	}
	signedBy := false
	for _, s := range n.Sigs {
		signedBy = signedBy || s.Name == v.hdr.Origin
	}
	f := strings.Split(n.Text, "\n")
	if !signedBy || len(f) != 6 || f[0] != trailerTitle || f[1] != v.hdr.Origin {
		v.verr.add(v.n, nil, "trailer is not an export signature by the log's key %q", v.hdr.Origin)
		return
	}
	if t.Lines != atoi(f[2]) || t.Events != atoi(f[3]) || t.SHA256 != f[4] {
		v.verr.add(v.n, nil, "the trailer's fields differ from its signed note")
		return
	}
	sum := hex.EncodeToString(v.sum.Sum(nil))
	switch {
	case t.Lines != v.n-1:
		v.verr.add(v.n, nil, "the signed trailer counts %d lines before it, the file has %d: lines were added or removed", t.Lines, v.n-1)
	case t.Events != v.events:
		v.verr.add(v.n, nil, "the signed trailer counts %d events, the file has %d: event lines were added or removed", t.Events, v.events)
	case t.SHA256 != sum:
		v.verr.add(v.n, nil, "the signed trailer does not match the lines above it (SHA-256 %s, file %s): a line was changed or lines were reordered", t.SHA256, sum)
	}
}

// oneSignature reports whether a signed note carries exactly one
// signature line whose base64 is canonical.
func oneSignature(signed string) bool {
	i := strings.LastIndex(signed, "\n\n")
	if i < 0 {
		return false
	}
	sig := signed[i+2:]
	if strings.Count(sig, "\n") != 1 || !strings.HasSuffix(sig, "\n") {
		return false
	}
	b64 := sig[strings.LastIndexByte(strings.TrimSuffix(sig, "\n"), ' ')+1 : len(sig)-1]
	d, err := base64.StdEncoding.Strict().DecodeString(b64)
	return err == nil && base64.StdEncoding.EncodeToString(d) == b64
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func (v *exportVerifier) finish() {
	if v.n == 0 {
		v.verr.add(1, nil, "the file is empty")
		return
	}
	end := v.trailer
	if end == 0 {
		end = v.n + 1
		v.verr.add(end, nil, "end of file without the signed trailer: the export was truncated")
	}
	if v.hdr.Format == FormatExport && v.hdr.Tenant == "" && v.next < v.hdr.To {
		v.verr.add(end, nil, "%s missing at the end of the range %d..%d", seqRange(v.next, v.hdr.To), v.hdr.From, int64(v.hdr.To)-1)
	}
}

func seqRange(from, to uint64) string {
	if to == from+1 {
		return fmt.Sprintf("event seq %d is", from)
	}
	return fmt.Sprintf("events seq %d..%d are", from, to-1)
}

func optSeq(p *uint64) string {
	if p == nil {
		return "(none)"
	}
	return strconv.FormatUint(*p, 10)
}

// readLine returns the next line without its newline; complete is false
// when the input ended before a newline. Lines longer than maxLine are an
// error.
func readLine(br *bufio.Reader) (line []byte, complete bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxLine {
			return nil, false, fmt.Errorf("a line is longer than %d bytes: not an export", maxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, false, err
		}
	}
}

func b64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }
