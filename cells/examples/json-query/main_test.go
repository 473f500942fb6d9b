package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/cellio"
)

func decode(t *testing.T, src string) Input {
	t.Helper()
	var in Input
	if err := cellio.Decode(strings.NewReader(src), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func encode(t *testing.T, out Output) string {
	t.Helper()
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRun(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"identity", `{"query": ".", "document": {"a": [1, 2]}}`, `{"results":[{"a":[1,2]}],"truncated":false}`, ""},
		{"no results", `{"query": "empty", "document": 1}`, `{"results":[],"truncated":false}`, ""},
		{"stream", `{"query": ".[] | .b", "document": [{"b": 1}, {"b": "x"}]}`, `{"results":[1,"x"],"truncated":false}`, ""},
		{"big integer kept", `{"query": ". + 1", "document": 100000000000000000001}`, `{"results":[100000000000000000002],"truncated":false}`, ""},
		{"limit exact", `{"query": "range(3)", "document": null, "limit": 3}`, `{"results":[0,1,2],"truncated":false}`, ""},
		{"limit hit", `{"query": "range(4)", "document": null, "limit": 3}`, `{"results":[0,1,2],"truncated":true}`, ""},
		{"default limit", `{"query": "[limit(1001; repeat(1))] | .[]", "document": null}`, "", ""},
		{"nan and infinity", `{"query": "[nan, infinite]", "document": null}`, `{"results":[[null,1.7976931348623157e+308]],"truncated":false}`, ""},
		{"halt stops cleanly", `{"query": "1, halt, 2", "document": null}`, `{"results":[1],"truncated":false}`, ""},
		{"own now shadows guard", `{"query": "def now: 5; now", "document": null}`, `{"results":[5],"truncated":false}`, ""},
		{"env is empty", `{"query": "env", "document": null}`, `{"results":[{}],"truncated":false}`, ""},
		{"parse error", `{"query": ".a |", "document": {}}`, "", "does not parse: unexpected EOF at offset 4"},
		{"unterminated string", `{"query": "\"abc", "document": {}}`, "", "unterminated string literal"},
		{"unknown function", `{"query": "foo(1)", "document": {}}`, "", "does not compile: function not defined: foo/1"},
		{"input not allowed", `{"query": "input", "document": {}}`, "", "does not compile"},
		{"debug not allowed", `{"query": "debug", "document": {}}`, "", "does not compile"},
		{"now disabled", `{"query": "now", "document": null}`, "", "now is disabled"},
		{"runtime error", `{"query": ".[] + 1", "document": [1, "a"]}`, "", "query failed after 1 result(s): cannot add"},
		{"halt_error", `{"query": "halt_error", "document": "bad"}`, "", "halt error: bad"},
		{"blank query", `{"query": "  ", "document": null}`, "", "input.query is empty"},
		{"limit too big", `{"query": ".", "document": null, "limit": 10001}`, "", "input.limit is 10001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(decode(t, tt.in), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if tt.name == "default limit" {
				if len(out.Results) != defaultLimit || !out.Truncated {
					t.Errorf("got %d results, truncated %v; want %d, true", len(out.Results), out.Truncated, defaultLimit)
				}
				return
			}
			if got := encode(t, out); got != tt.want {
				t.Errorf("run =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

func TestSizeCap(t *testing.T) {
	// 200 results of 10 kB each are 2 MB: the cap stops at about 1 MB.
	in := decode(t, `{"query": "range(200) | \"x\" * 10000", "document": null}`)
	out, err := run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for _, r := range out.Results {
		size += len(r) + 1
	}
	if !out.Truncated || size > maxResultBytes || len(out.Results) < 90 {
		t.Errorf("got %d results (%d bytes), truncated %v; want about 99 results under %d bytes, truncated", len(out.Results), size, out.Truncated, maxResultBytes)
	}
}
