// Command config-audit is an example cell: it checks a cloud configuration
// (storage buckets, security groups, IAM users, databases) against the rule
// set shipped beside it in the capsule as rules.json, and reports findings.
//
// It reads its input and its own read-only rules file, reports progress on
// fd 3 when that is open, and writes nothing else.
package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/trustcells/tcc/cells/cellio"
)

// rulesPath is where the sandbox mounts the capsule's rules file. When the
// cell is run by hand outside a sandbox it falls back to rules.json beside
// its binary.
const rulesPath = "/cell/rules.json"

// Input is a configuration to audit.
type Input struct {
	Resources []map[string]any `json:"resources"`
	// FailOn is the lowest severity that makes the audit fail; default high.
	FailOn string `json:"fail_on"`
}

// Finding is one rule that one resource (or one element of it) breaks.
type Finding struct {
	Rule        string `json:"rule"`
	Severity    string `json:"severity"`
	Title       string `json:"title"`
	Resource    string `json:"resource"`
	Type        string `json:"type"`
	Path        string `json:"path"`
	Message     string `json:"message"`
	Remediation string `json:"remediation"`
}

// Summary counts findings by severity.
type Summary struct {
	Critical  int `json:"critical"`
	High      int `json:"high"`
	Medium    int `json:"medium"`
	Low       int `json:"low"`
	Resources int `json:"resources"`
	Rules     int `json:"rules"`
}

// Output lists findings most severe first, then in input order. The
// summary counts every finding; the list stops at maxFindings (Truncated)
// so that the output stays under the manifest's 2 MiB limit.
type Output struct {
	Findings  []Finding `json:"findings"`
	Truncated bool      `json:"truncated"`
	Summary   Summary   `json:"summary"`
	Passed    bool      `json:"passed"`
}

// maxFindings bounds the list: a finding encodes to at most about 900 bytes
// with the schema's 256-byte names.
const maxFindings = 2000

func main() {
	cellio.Main("config-audit", func(in Input, p *cellio.Progress) (Output, error) {
		rs, err := loadRules(rulesPath)
		if errors.Is(err, fs.ErrNotExist) {
			rs, err = loadRules(filepath.Join(filepath.Dir(os.Args[0]), "rules.json"))
		}
		if err != nil {
			return Output{}, err
		}
		return audit(rs, in, p)
	})
}

// audit applies every rule to every resource.
func audit(rs *RuleSet, in Input, p *cellio.Progress) (Output, error) {
	failOn := in.FailOn
	if failOn == "" {
		failOn = "high"
	}
	if !slices.Contains(severities, failOn) {
		return Output{}, fmt.Errorf("input.fail_on is %q; use one of %s", failOn, strings.Join(severities, ", "))
	}
	p.Report(0, fmt.Sprintf("loaded %d rules", len(rs.Rules)))
	out := Output{Findings: []Finding{}, Summary: Summary{Resources: len(in.Resources), Rules: len(rs.Rules)}}
	// At most about 20 progress lines, however many resources there are.
	every := max(len(in.Resources)/20, 1)
	for i, res := range in.Resources {
		typ, _ := res["type"].(string)
		name, _ := res["name"].(string)
		if typ == "" || name == "" {
			return Output{}, fmt.Errorf("input.resources[%d] needs a string type and name", i)
		}
		path := fmt.Sprintf("resources[%d]", i)
		for ri := range rs.Rules {
			r := &rs.Rules[ri]
			if r.Resource != typ {
				continue
			}
			for _, t := range targets(res, r.Each, path) {
				if r.match(t.obj) {
					out.Findings = append(out.Findings, Finding{
						Rule: r.ID, Severity: r.Severity, Title: r.Title,
						Resource: name, Type: typ, Path: t.path,
						Message: render(r.Message, t.obj), Remediation: r.Remediation,
					})
				}
			}
		}
		if (i+1)%every == 0 || i == len(in.Resources)-1 {
			p.Report(float64(i+1)/float64(len(in.Resources)), fmt.Sprintf("checked %s %s", typ, name))
		}
	}
	slices.SortStableFunc(out.Findings, func(a, b Finding) int {
		return severityRank(b.Severity) - severityRank(a.Severity)
	})
	out.Passed = true
	for _, f := range out.Findings {
		switch f.Severity {
		case "critical":
			out.Summary.Critical++
		case "high":
			out.Summary.High++
		case "medium":
			out.Summary.Medium++
		case "low":
			out.Summary.Low++
		}
		if severityRank(f.Severity) >= severityRank(failOn) {
			out.Passed = false
		}
	}
	if len(out.Findings) > maxFindings {
		out.Findings, out.Truncated = out.Findings[:maxFindings], true
	}
	return out, nil
}

type target struct {
	obj  map[string]any
	path string
}

// targets is the resource itself, or each object element of its array
// field each.
func targets(res map[string]any, each, path string) []target {
	if each == "" {
		return []target{{res, path}}
	}
	list, _ := res[each].([]any)
	var ts []target
	for j, el := range list {
		if obj, ok := el.(map[string]any); ok {
			ts = append(ts, target{obj, fmt.Sprintf("%s.%s[%d]", path, each, j)})
		}
	}
	return ts
}
