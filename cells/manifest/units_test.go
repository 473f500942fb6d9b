package manifest

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  string
	}{
		{"4096", 4096, ""},
		{"4096B", 4096, ""},
		{"64MiB", 64 << 20, ""},
		{"64 MiB", 64 << 20, ""},
		{"512KiB", 512 << 10, ""},
		{"1GiB", 1 << 30, ""},
		{"1TiB", 1 << 40, ""},
		{"1.5MB", 1500000, ""},
		{"1.5KiB", 1536, ""},
		{"2kB", 2000, ""},
		{"2KB", 2000, ""},
		{"0", 0, ""},
		{"8388607TiB", 8388607 << 40, ""},
		{"8388608TiB", 0, "too large"},
		{"64mb", 0, `unknown unit "mb"`},
		{"64Mb", 0, `unknown unit "Mb"`},
		{"1.3B", 0, "whole number of bytes"},
		{"-1", 0, "not a size"},
		{"1e3", 0, "not a size"},
		{"", 0, "not a size"},
		{"MiB", 0, "not a size"},
		{"1/2MiB", 0, "not a size"},
		{".5MiB", 0, "not a size"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q): got %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q): got %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{100, "100B"},
		{1024, "1KiB"},
		{1536, "1.5KiB"},
		{1280, "1.25KiB"},
		{64 << 20, "64MiB"},
		{3 << 29, "1.5GiB"},
		{1 << 40, "1TiB"},
		{1500000, "1500kB"},
		{2000000, "2MB"},
		{1000, "1kB"},
		{1001, "1001B"},
		{(64 << 20) + 1, "67108865B"},
	}
	for _, tt := range tests {
		got := tt.in.String()
		if got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseSize(got); err != nil || back != tt.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", got, back, err, tt.in)
		}
	}
}

func TestDurationAndCoresString(t *testing.T) {
	if got := Duration(10e9).String(); got != "10s" {
		t.Errorf("Duration: got %q, want 10s", got)
	}
	if got := Duration(90e9).String(); got != "1m30s" {
		t.Errorf("Duration: got %q, want 1m30s", got)
	}
	if got := Cores(0.5).String(); got != "0.5" {
		t.Errorf("Cores: got %q, want 0.5", got)
	}
	if got := Cores(1).String(); got != "1" {
		t.Errorf("Cores: got %q, want 1", got)
	}
}

func TestCanonicalNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"-0", "0"},
		{"+0.000", "0"},
		{"1", "1"},
		{"1.0", "1"},
		{"1.50", "1.5"},
		{"-1.5e3", "-1500"},
		{"1e3", "1000"},
		{"1E+3", "1000"},
		{"0.001", "0.001"},
		{".5", "0.5"},
		{"5.", "5"},
		{"0.000001", "0.000001"},
		{"0.0000001", "1e-7"},
		{"123e-10", "1.23e-8"},
		{"100000000000000000000", "100000000000000000000"},
		{"1000000000000000000000", "1e+21"},
		{"12345678901234567890123", "1.2345678901234567890123e+22"},
		{"1e400", "1e+400"},
		{"0.1e-399", "1e-400"},
	}
	for _, tt := range tests {
		got, ok := canonicalNumber(tt.in)
		if !ok || got != tt.want {
			t.Errorf("canonicalNumber(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
			continue
		}
		if again, _ := canonicalNumber(got); again != got {
			t.Errorf("canonicalNumber(%q) = %q, not a fixed point", got, again)
		}
	}
	for _, bad := range []string{"1e401", "1e-402", "1e99999999999999999999"} {
		if got, ok := canonicalNumber(bad); ok {
			t.Errorf("canonicalNumber(%q) = %q, want out of range", bad, got)
		}
	}
}
