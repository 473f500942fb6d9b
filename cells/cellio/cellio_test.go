package cellio

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type in struct {
		A string `json:"a"`
		N any    `json:"n"`
	}
	tests := []struct {
		name, src string
		wantErr   string
	}{
		{"ok", `{"a":"x","n":12345678901234567890}`, ""},
		{"whitespace after", "{\"a\":\"x\"}\n\n", ""},
		{"empty", ``, "stdin is empty"},
		{"unknown field", `{"b":1}`, `unknown field "b"`},
		{"trailing value", `{"a":"x"} {}`, "after the first JSON value"},
		{"trailing garbage", `{"a":"x"} x`, "after the first JSON value"},
		{"not json", `{a}`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v in
			err := Decode(strings.NewReader(tt.src), &v)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	var v in
	if err := Decode(strings.NewReader(`{"n":12345678901234567890}`), &v); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.N.(json.Number); !ok || got != "12345678901234567890" {
		t.Errorf("big number decoded as %#v, want json.Number kept exact", v.N)
	}
	if err := Decode(strings.NewReader(`{} 1`), &v); !errors.Is(err, ErrTrailingData) {
		t.Errorf("Decode trailing data: %v, want ErrTrailingData", err)
	}
}

func TestEncode(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, map[string]string{"q": "a<b>&c"}); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "{\"q\":\"a<b>&c\"}\n"; got != want {
		t.Errorf("Encode = %q, want %q", got, want)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
	p.Report(-1, "start")
	p.Report(0.5, "")
	p.Report(7, "done")
	want := `{"progress":0,"message":"start"}` + "\n" + `{"progress":0.5}` + "\n" + `{"progress":1,"message":"done"}` + "\n"
	if got := buf.String(); got != want {
		t.Errorf("progress lines\n got %q\nwant %q", got, want)
	}

	var nilP *Progress
	nilP.Report(0.5, "no panic")
	(&Progress{}).Report(0.5, "discarded")

	fw := &failWriter{}
	p = NewProgress(fw)
	p.Report(0.1, "a")
	p.Report(0.2, "b")
	if fw.n != 1 {
		t.Errorf("writes after a failed write = %d, want reporting to stop after the first failure", fw.n-1)
	}
}
