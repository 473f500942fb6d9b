package main

import (
	"strings"
	"testing"
)

func ptr(s string) *string { return &s }

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		in      Input
		want    Output
		wantErr string
	}{
		{"text", Input{Text: ptr("abc")}, Output{"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3}, ""},
		{"empty text", Input{Text: ptr("")}, Output{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0}, ""},
		{"utf-8 text", Input{Text: ptr("é")}, Output{"4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c", 2}, ""},
		{"base64", Input{Base64: ptr("YWJj")}, Output{"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3}, ""},
		{"empty base64", Input{Base64: ptr("")}, Output{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0}, ""},
		{"base64 unpadded", Input{Base64: ptr("YWI")}, Output{}, "not a multiple of 4"},
		{"base64 bad char", Input{Base64: ptr("YW*j")}, Output{}, "near byte 2"},
		{"both", Input{Text: ptr("a"), Base64: ptr("YQ==")}, Output{}, "exactly one"},
		{"neither", Input{}, Output{}, "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := run(tt.in, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got != tt.want {
				t.Errorf("run = %+v, want %+v", got, tt.want)
			}
		})
	}
}
