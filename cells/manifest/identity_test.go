package manifest

import (
	"errors"
	"strings"
	"testing"
)

const testHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"sha256:" + testHex, true},
		{testHex, false},
		{"sha256:" + strings.ToUpper(testHex), false},
		{"sha256:" + testHex[:63], false},
		{"sha256:" + testHex + "0", false},
		{"sha512:" + testHex, false},
		{"", false},
	}
	for _, tt := range tests {
		_, err := ParseIdentity(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseIdentity(%q): err %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadDigest) {
			t.Errorf("ParseIdentity(%q): %v is not ErrBadDigest", tt.in, err)
		}
		if _, err := ParseDigest(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseDigest(%q): err %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestIdentityPrefix(t *testing.T) {
	id := Identity("sha256:" + testHex)
	if got, want := id.Short(), "sha256:0123456789ab"; got != want {
		t.Errorf("Short: got %q, want %q", got, want)
	}
	if got := id.Hex(); got != testHex {
		t.Errorf("Hex: got %q", got)
	}
	tests := []struct {
		prefix string
		want   bool
	}{
		{"0123", true},
		{"sha256:0123", true},
		{"sha256:0123456789AB", true},
		{"sha256:" + testHex, true},
		{testHex, true},
		{"012", false},          // too short
		{"sha256:012", false},   // too short
		{"1234", false},         // not a prefix
		{"sha256:", false},      // empty
		{"01zz", false},         // not hex
		{testHex + "00", false}, // too long
		{"sha512:0123", false},  // wrong algorithm is not hex
	}
	for _, tt := range tests {
		if got := id.HasPrefix(tt.prefix); got != tt.want {
			t.Errorf("HasPrefix(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
	if err := CheckPrefix("ab"); err == nil || !strings.Contains(err.Error(), "at least 4 hex digits") {
		t.Errorf("CheckPrefix(ab): got %v", err)
	}
}

func TestDigestOf(t *testing.T) {
	const empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := DigestOf(nil); got != empty {
		t.Errorf("DigestOf(nil) = %s", got)
	}
	got, n, err := DigestReader(strings.NewReader(""))
	if err != nil || got != empty || n != 0 {
		t.Errorf("DigestReader: %s %d %v", got, n, err)
	}
}

func TestIdentityIsHashOfCanonical(t *testing.T) {
	m := mustParse(t, readTestdata(t, "minimal.yaml"))
	if got, want := string(m.Identity()), string(DigestOf(m.Canonical())); got != want {
		t.Errorf("Identity %s, want %s", got, want)
	}
}
