// Package cellio is the I/O contract of a first-party cell, seen from inside
// the sandbox: one JSON value on stdin, one JSON object on stdout, optional
// progress lines on fd 3, and on failure a one-line message on stderr and
// exit status 1.
//
// It is linked into cell binaries, so it stays small, uses the standard
// library only and never touches anything but fds 0–3.
package cellio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// ProgressFD is the descriptor the daemon reads progress lines from.
const ProgressFD = 3

// ErrTrailingData is returned by Decode when stdin holds more than one JSON
// value.
var ErrTrailingData = errors.New("input has data after the first JSON value")

// Decode reads exactly one JSON value from r into v. Unknown object fields
// are an error when v is a struct: the daemon validated the input against
// the cell's schema, so an unknown field means the schema and the code
// disagree. Numbers decode as json.Number where v holds an interface.
func Decode(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("decode input: stdin is empty, want one JSON value")
		}
		return fmt.Errorf("decode input: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode input: %w", ErrTrailingData)
	}
	return nil
}

// Encode writes v to w as one line of JSON, without HTML escaping so that
// the output is byte-for-byte what a reader expects.
func Encode(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// Progress writes progress lines. The zero value and a nil *Progress
// discard everything, so cells report progress without checking whether
// anyone listens.
type Progress struct {
	w io.Writer
}

// progressLine is one line on fd 3.
type progressLine struct {
	Progress float64 `json:"progress"`
	Message  string  `json:"message,omitempty"`
}

// OpenProgress returns a Progress on fd 3 when fd 3 is open as a pipe,
// socket or regular file, and a discarding Progress otherwise (fd 3 closed:
// EBADF; a terminal or directory some shell left behind: ignored).
func OpenProgress() *Progress {
	f := os.NewFile(ProgressFD, "progress")
	if f == nil {
		return &Progress{}
	}
	fi, err := f.Stat()
	if err != nil {
		return &Progress{}
	}
	m := fi.Mode()
	if m&os.ModeNamedPipe == 0 && m&os.ModeSocket == 0 && !m.IsRegular() {
		return &Progress{}
	}
	return &Progress{w: f}
}

// NewProgress returns a Progress writing to w (for tests).
func NewProgress(w io.Writer) *Progress { return &Progress{w: w} }

// Report writes one progress line; frac is clamped to [0, 1]. A write error
// (the reader went away) turns further reports off: progress is advisory
// and never fails a call.
func (p *Progress) Report(frac float64, msg string) {
	if p == nil || p.w == nil {
		return
	}
	frac = min(max(frac, 0), 1)
	b, err := json.Marshal(progressLine{Progress: frac, Message: msg})
	if err != nil {
		return
	}
	if _, err := p.w.Write(append(b, '\n')); err != nil {
		p.w = nil
	}
}

// MaxProcs caps GOMAXPROCS in a cell. The pids limit counts threads, and
// a Go program without /proc (so blind to its cgroup CPU quota) sizes
// itself to every core of the host: on a large machine the garbage
// collector alone could then want more threads than limits.pids allows.
const MaxProcs = 2

// CapProcs lowers GOMAXPROCS to MaxProcs unless the GOMAXPROCS environment
// variable sets it. Main calls it first; cells with their own main should.
func CapProcs() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > MaxProcs {
		runtime.GOMAXPROCS(MaxProcs)
	}
}

// Main runs a cell: it decodes stdin into an In, calls run, and writes the
// Out to stdout. When anything fails it writes "name: error" to stderr and
// exits 1; the daemon hands that line to the caller, so errors should say
// what was wrong, where, and what to do.
func Main[In, Out any](name string, run func(in In, p *Progress) (Out, error)) {
	CapProcs()
	var in In
	if err := Decode(os.Stdin, &in); err != nil {
		Fail(name, err)
	}
	out, err := run(in, OpenProgress())
	if err != nil {
		Fail(name, err)
	}
	if err := Encode(os.Stdout, out); err != nil {
		Fail(name, err)
	}
}

// Fail writes "name: err" to stderr and exits 1.
func Fail(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
