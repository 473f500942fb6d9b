package manifest

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Size units. Binary units (KiB…) are powers of 1024, decimal units (kB…)
// powers of 1000. The B is case-sensitive: "Mb" would be megabits.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)$`)

var errSizeSyntax = errors.New("not a size")

// ParseSize parses "64MiB", "512KiB", "1.5MB", "4096" or "4096B".
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, errSizeSyntax
	}
	mult, ok := sizeUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (units: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB; the B is upper case)", m[2])
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, errSizeSyntax
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, errors.New("is not a whole number of bytes")
	}
	if !r.Num().IsInt64() {
		return 0, errors.New("is too large")
	}
	return Size(r.Num().Int64()), nil
}

// String gives a short exact human form: "64MiB", "1.5KiB", "1500kB", "100B".
// Every form it produces is accepted by ParseSize.
func (s Size) String() string {
	n := int64(s)
	if n > 0 {
		for _, u := range []struct {
			name string
			n    int64
		}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
			// Quarters read better than a raw byte count ("1.5GiB") and are exact.
			if n >= u.n && n%(u.n/4) == 0 {
				return strconv.FormatInt(n/u.n, 10) + [...]string{"", ".25", ".5", ".75"}[n%u.n/(u.n/4)] + u.name
			}
		}
		for _, u := range []struct {
			name string
			n    int64
		}{{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}} {
			if n%u.n == 0 {
				return strconv.FormatInt(n/u.n, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseDuration parses Go duration syntax: "5s", "250ms", "1m30s".
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration")
	}
	return Duration(d), nil
}

// String gives Go duration syntax: "10s", "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String gives the number of cores: "1", "0.5".
func (c Cores) String() string { return strconv.FormatFloat(float64(c), 'g', -1, 64) }

// finite reports whether f is neither NaN nor infinite.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// trimUnderscores removes YAML digit separators ("1_000").
func trimUnderscores(s string) string { return strings.ReplaceAll(s, "_", "") }
