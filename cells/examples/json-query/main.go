// Command json-query is an example cell: it runs a jq expression (gojq) over
// a JSON document and returns the results.
//
// It has no timeout of its own: the sandbox's wall-clock limit stops a
// query that loops, and its memory limit stops one that grows without end.
// It does cap what it returns, by count (input.limit) and by encoded size,
// so that a query with many results ends cleanly instead of overrunning the
// output limit.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/trustcells/tcc/cells/cellio"
)

const (
	defaultLimit = 1000
	maxLimit     = 10000

	// maxResultBytes keeps the encoded output under the manifest's
	// limits.output (1 MiB) with room for the envelope.
	maxResultBytes = 1000 * 1000
)

// Input is the query, the document it runs on and an optional result cap.
type Input struct {
	Query    string `json:"query"`
	Document any    `json:"document"`
	Limit    *int   `json:"limit"`
}

// Output holds the results in order. Truncated is true when the query had
// more results than the cap (limit, or about 1 MB of encoded results).
type Output struct {
	Results   []json.RawMessage `json:"results"`
	Truncated bool              `json:"truncated"`
}

// disabled are builtins that would make results depend on something other
// than the input. They are shadowed by definitions that fail, so a query
// using them gets a clear error instead of a clock reading.
const disabled = `def now: error("now is disabled: json-query results depend only on the input; pass a time in the document");`

func run(in Input, _ *cellio.Progress) (Output, error) {
	limit := defaultLimit
	if in.Limit != nil {
		limit = *in.Limit
	}
	if limit < 1 || limit > maxLimit {
		return Output{}, fmt.Errorf("input.limit is %d; it must be between 1 and %d", limit, maxLimit)
	}
	code, err := compile(in.Query)
	if err != nil {
		return Output{}, err
	}
	out := Output{Results: []json.RawMessage{}}
	size := 0
	iter := code.Run(in.Document)
	for {
		v, ok := iter.Next()
		if !ok {
			return out, nil
		}
		if err, isErr := v.(error); isErr {
			var halt *gojq.HaltError
			if errors.As(err, &halt) && halt.Value() == nil {
				return out, nil // halt: stop without error, as jq does
			}
			return Output{}, fmt.Errorf("query failed after %d result(s): %w", len(out.Results), err)
		}
		if len(out.Results) == limit {
			out.Truncated = true
			return out, nil
		}
		b, err := gojq.Marshal(v)
		if err != nil {
			return Output{}, fmt.Errorf("result %d cannot be encoded as JSON: %w", len(out.Results), err)
		}
		if size+len(b)+1 > maxResultBytes {
			out.Truncated = true
			return out, nil
		}
		size += len(b) + 1
		out.Results = append(out.Results, b)
	}
}

// compile parses and compiles the query, reporting where a parse error is.
func compile(query string) (*gojq.Code, error) {
	if strings.TrimSpace(query) == "" {
		return nil, errors.New("input.query is empty; give a jq expression such as \".\"")
	}
	q, err := gojq.Parse(query)
	if err != nil {
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("input.query does not parse: %v at offset %d: %s", pe, pe.Offset, excerpt(query, pe.Offset))
		}
		return nil, fmt.Errorf("input.query does not parse: %w", err)
	}
	guard, err := gojq.Parse(disabled + " .")
	if err != nil {
		return nil, fmt.Errorf("internal: built-in guard does not parse: %w", err)
	}
	// The guard's definitions come first so the query's own can shadow them.
	q.FuncDefs = append(guard.FuncDefs, q.FuncDefs...)
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, fmt.Errorf("input.query does not compile: %w", err)
	}
	return code, nil
}

// excerpt shows the query up to offset with a marker, trimmed to a readable
// length.
func excerpt(query string, offset int) string {
	offset = min(max(offset, 0), len(query))
	start := max(offset-40, 0)
	return fmt.Sprintf("%q <-- here", query[start:offset])
}

func main() { cellio.Main("json-query", run) }
