package audit

import (
	"bytes"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// smallExport builds a valid export of n events with tlog alone.
func smallExport(t testing.TB, n int) ([]byte, note.Verifiers) {
	t.Helper()
	// A fixed key, so that fuzz workers build the same export.
	skey, vkey, err := note.GenerateKey(mrand.NewChaCha8([32]byte{'a'}), "audit.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	var leaves [][]byte
	var hashes []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i := range n {
		leaf, _ := (&Event{Seq: uint64(i), TimeNS: int64(i + 1), Type: TypeCallBegin, Message: "<&>"}).Encode()
		hs, err := tlog.StoredHashes(int64(i), leaf, hr)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
		leaves = append(leaves, leaf)
	}
	root, _ := tlog.TreeHash(int64(n), hr)
	signed, _ := note.Sign(&note.Note{Text: Checkpoint{Origin: "audit.test/log", Size: uint64(n), Hash: root}.Text()}, signer)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, signer, Header{Origin: "audit.test/log", TreeSize: uint64(n), To: uint64(n), Checkpoint: string(signed)})
	if err != nil {
		t.Fatal(err)
	}
	for i, leaf := range leaves {
		p, err := tlog.ProveRecord(int64(n), int64(i), hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Event(leaf, uint64(i), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), note.VerifierList(verifier)
}

func TestDecodeLeaf(t *testing.T) {
	good := `{"seq":1,"timestamp_ns":2,"type":"call.end","verdict":"ok"}`
	if _, err := DecodeLeaf([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"seq":1,"timestamp_ns":2,"type":"call.end","verdict":"ok","verdict":"error"}`,
		`{"seq":1, "timestamp_ns":2,"type":"call.end","verdict":"ok"}`,
		`{"seq":1,"timestamp_ns":2,"type":"call.end","message":"\u003c"}`,
		`{"seq":1,"timestamp_ns":2,"type":"call.end","bogus":1}`,
	} {
		if _, err := DecodeLeaf([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeLeaf(%s) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestVerifyExportStandalone(t *testing.T) {
	data, vs := smallExport(t, 9)
	rep, err := VerifyExport(bytes.NewReader(data), "x.jsonl", vs)
	if err != nil || rep.Events != 9 {
		t.Fatalf("VerifyExport = %+v, %v", rep, err)
	}
	_, other, _ := note.GenerateKey(rand.Reader, "audit.test/log")
	ov, _ := note.NewVerifier(other)
	if _, err := VerifyExport(bytes.NewReader(data), "x.jsonl", note.VerifierList(ov)); err == nil ||
		!strings.Contains(err.Error(), "x.jsonl:1: checkpoint does not verify") || !strings.Contains(err.Error(), "x.jsonl:11: trailer signature") {
		t.Errorf("with another key: %v", err)
	}
	if _, err := VerifyExport(strings.NewReader(""), "x.jsonl", vs); err == nil {
		t.Error("an empty file verified")
	}
}

// FuzzVerifyExport: the verifier never panics, and accepts nothing but
// the export it was given unchanged: every byte of an export is covered by
// a signature or has exactly one accepted form.
func FuzzVerifyExport(f *testing.F) {
	data, vs := smallExport(f, 5)
	f.Add(data)
	f.Add(data[:len(data)/2])
	// The trailer, the one line its own hash does not cover, re-encoded.
	i := bytes.LastIndex(data[:len(data)-1], []byte("\n")) + 1
	f.Add(append(bytes.Clone(data[:i]), bytes.Replace(data[i:], []byte(`{"kind":"end",`), []byte(`{ "KIND" : "end" ,`), 1)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, err := VerifyExport(bytes.NewReader(in), "f.jsonl", vs)
		if err == nil && !bytes.Equal(in, data) {
			t.Fatalf("a changed export verified:\n%s", in)
		}
	})
}
