package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/trustcells/tcc/cells/cellio"
)

func shipped(t *testing.T) *RuleSet {
	t.Helper()
	rs, err := loadRules("rules.json")
	if err != nil {
		t.Fatalf("shipped rules.json: %v", err)
	}
	return rs
}

func input(t *testing.T, src string) Input {
	t.Helper()
	var in Input
	if err := cellio.Decode(strings.NewReader(src), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func ruleIDs(out Output) []string {
	var ids []string
	for _, f := range out.Findings {
		ids = append(ids, f.Rule+"@"+f.Path)
	}
	return ids
}

func TestShippedRules(t *testing.T) {
	rs := shipped(t)
	if n := len(rs.Rules); n < 10 || n > 15 {
		t.Errorf("%d rules, want 10 to 15", n)
	}
}

// TestEachRule gives every shipped rule a resource that breaks it and only
// it (among rules of that severity and type, as far as possible), so that a
// rule that never fires is noticed.
func TestEachRule(t *testing.T) {
	safeBucket := `"public": false, "encryption": true, "versioning": true`
	safeDB := `"public": false, "encryption": true, "backup_retention_days": 7, "deletion_protection": true`
	tests := []struct {
		resource string
		want     []string
	}{
		{`{"type": "storage_bucket", "name": "b", "public": true, "encryption": true, "versioning": true}`, []string{"TCC-S3-001@resources[0]"}},
		{`{"type": "storage_bucket", "name": "b", "public": false, "versioning": true}`, []string{"TCC-S3-002@resources[0]"}},
		{`{"type": "storage_bucket", "name": "b", "public": false, "encryption": true, "versioning": false}`, []string{"TCC-S3-003@resources[0]"}},
		{`{"type": "storage_bucket", "name": "b", ` + safeBucket + `}`, nil},
		{`{"type": "security_group", "name": "g", "ingress": [{"port": 22, "cidr": "10.0.0.0/8"}, {"port": 22, "cidr": "0.0.0.0/0"}]}`, []string{"TCC-NET-001@resources[0].ingress[1]"}},
		{`{"type": "security_group", "name": "g", "ingress": [{"port": 3389, "cidr": "::/0"}]}`, []string{"TCC-NET-002@resources[0].ingress[0]"}},
		{`{"type": "security_group", "name": "g", "ingress": [{"port": 5432, "cidr": "0.0.0.0/0"}, {"port": 443, "cidr": "0.0.0.0/0"}]}`, []string{"TCC-NET-003@resources[0].ingress[0]"}},
		{`{"type": "security_group", "name": "g", "ingress": [{"port": 0, "cidr": "0.0.0.0/0"}]}`, []string{"TCC-NET-004@resources[0].ingress[0]"}},
		{`{"type": "security_group", "name": "g"}`, nil},
		{`{"type": "iam_user", "name": "u"}`, []string{"TCC-IAM-001@resources[0]"}},
		{`{"type": "iam_user", "name": "u", "mfa": true, "keys": [{"age_days": 90}, {"age_days": 91}, {"age_days": 365}]}`, []string{"TCC-IAM-002@resources[0].keys[1]", "TCC-IAM-002@resources[0].keys[2]"}},
		{`{"type": "iam_user", "name": "u", "mfa": true, "keys": [{"age_days": 366}, {"age_days": 999, "active": false}]}`, []string{"TCC-IAM-003@resources[0].keys[0]"}},
		{`{"type": "iam_user", "name": "u", "admin": true, "mfa": false}`, []string{"TCC-IAM-004@resources[0]", "TCC-IAM-001@resources[0]"}},
		{`{"type": "iam_user", "name": "u", "admin": true, "mfa": true}`, nil},
		{`{"type": "database", "name": "d", "public": true, "encryption": true, "backup_retention_days": 7, "deletion_protection": true}`, []string{"TCC-DB-001@resources[0]"}},
		{`{"type": "database", "name": "d", "public": false, "encryption": false, "backup_retention_days": 7, "deletion_protection": true}`, []string{"TCC-DB-002@resources[0]"}},
		{`{"type": "database", "name": "d", "public": false, "encryption": true, "backup_retention_days": 6, "deletion_protection": true}`, []string{"TCC-DB-003@resources[0]"}},
		{`{"type": "database", "name": "d", "public": false, "encryption": true, "deletion_protection": true}`, []string{"TCC-DB-003@resources[0]"}},
		{`{"type": "database", "name": "d", "public": false, "encryption": true, "backup_retention_days": 30}`, []string{"TCC-DB-004@resources[0]"}},
		{`{"type": "database", "name": "d", ` + safeDB + `, "tags": {"team": "x"}}`, nil},
	}
	rs := shipped(t)
	fired := map[string]bool{}
	for _, tt := range tests {
		out, err := audit(rs, input(t, `{"resources": [`+tt.resource+`]}`), nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.resource, err)
		}
		if got := ruleIDs(out); !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.resource, got, tt.want)
		}
		for _, f := range out.Findings {
			fired[f.Rule] = true
		}
	}
	for _, r := range rs.Rules {
		if !fired[r.ID] {
			t.Errorf("rule %s never fired", r.ID)
		}
	}
}

func TestMessages(t *testing.T) {
	out, err := audit(shipped(t), input(t, `{"resources": [
		{"type": "security_group", "name": "web", "ingress": [{"port": 6379, "cidr": "::/0"}]},
		{"type": "database", "name": "db", "encryption": true, "deletion_protection": true}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Database port 6379 is open to ::/0.",
		"Database db keeps backups for fewer than 7 days (backup_retention_days: (unset)).",
	}
	var got []string
	for _, f := range out.Findings {
		got = append(got, f.Message)
	}
	if !slices.Equal(got, want) {
		t.Errorf("messages\n got %q\nwant %q", got, want)
	}
}

func TestPassedAndSummary(t *testing.T) {
	cfg := `"resources": [{"type": "database", "name": "d", "encryption": true, "backup_retention_days": 1}]`
	tests := []struct {
		failOn string
		passed bool
	}{
		{"", true}, {"critical", true}, {"high", true}, {"medium", false}, {"low", false},
	}
	for _, tt := range tests {
		in := input(t, `{`+cfg+`}`)
		in.FailOn = tt.failOn
		out, err := audit(shipped(t), in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out.Passed != tt.passed {
			t.Errorf("fail_on %q: passed = %v, want %v", tt.failOn, out.Passed, tt.passed)
		}
		want := Summary{Medium: 1, Low: 1, Resources: 1, Rules: 15}
		if out.Summary != want {
			t.Errorf("summary = %+v, want %+v", out.Summary, want)
		}
	}
	if _, err := audit(shipped(t), Input{FailOn: "info"}, nil); err == nil || !strings.Contains(err.Error(), "input.fail_on") {
		t.Errorf("fail_on info: err = %v, want an input.fail_on error", err)
	}
}

func TestOrderAndTruncation(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"resources": [`)
	for i := range 2001 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"type": "database", "name": "d", "encryption": true, "backup_retention_days": 1, "deletion_protection": true}`)
	}
	b.WriteString(`, {"type": "storage_bucket", "name": "b", "public": true, "encryption": true, "versioning": true}]}`)
	out, err := audit(shipped(t), input(t, b.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Truncated || len(out.Findings) != maxFindings {
		t.Fatalf("%d findings, truncated %v; want %d, true", len(out.Findings), out.Truncated, maxFindings)
	}
	if f := out.Findings[0]; f.Rule != "TCC-S3-001" {
		t.Errorf("first finding %s, want the critical TCC-S3-001 sorted first", f.Rule)
	}
	if out.Summary.Medium != 2001 || out.Summary.Critical != 1 {
		t.Errorf("summary %+v, want every finding counted", out.Summary)
	}
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	in := input(t, `{"resources": [{"type": "iam_user", "name": "a", "mfa": true}, {"type": "iam_user", "name": "b", "mfa": true}]}`)
	if _, err := audit(shipped(t), in, cellio.NewProgress(&buf)); err != nil {
		t.Fatal(err)
	}
	want := `{"progress":0,"message":"loaded 15 rules"}
{"progress":0.5,"message":"checked iam_user a"}
{"progress":1,"message":"checked iam_user b"}
`
	if got := buf.String(); got != want {
		t.Errorf("progress\n got %s\nwant %s", got, want)
	}
}

func TestParseRulesErrors(t *testing.T) {
	rule := func(s string) string {
		return `{"version": 1, "rules": [` + s + `]}`
	}
	ok := `"id": "TCC-X-001", "severity": "low", "resource": "database", "title": "t", "message": "m", "remediation": "r"`
	tests := []struct{ name, src, wantErr string }{
		{"not json", `{`, "unexpected EOF"},
		{"unknown field", `{"version": 1, "rules": [], "x": 1}`, `unknown field "x"`},
		{"version", `{"version": 2, "rules": []}`, "version is 2"},
		{"no rules", `{"version": 1, "rules": []}`, "no rules"},
		{"bad id", rule(`{"id": "x", "severity": "low", "resource": "database", "title": "t", "message": "m", "remediation": "r", "when": [{"field": "a", "op": "is_true"}]}`), "id must look like"},
		{"severity", rule(`{"id": "TCC-X-001", "severity": "urgent", "resource": "database", "title": "t", "message": "m", "remediation": "r", "when": [{"field": "a", "op": "is_true"}]}`), "severity \"urgent\""},
		{"no when", rule(`{` + ok + `, "when": []}`), "at least one condition"},
		{"unknown op", rule(`{` + ok + `, "when": [{"field": "a", "op": "matches"}]}`), `unknown op "matches"`},
		{"missing value", rule(`{` + ok + `, "when": [{"field": "a", "op": "gt"}]}`), "needs a value"},
		{"extra value", rule(`{` + ok + `, "when": [{"field": "a", "op": "is_true", "value": 1}]}`), "takes no value"},
		{"in not list", rule(`{` + ok + `, "when": [{"field": "a", "op": "in", "value": 1}]}`), "needs a list"},
		{"gt not number", rule(`{` + ok + `, "when": [{"field": "a", "op": "gt", "value": "x"}]}`), "needs a number"},
		{"duplicate", rule(`{` + ok + `, "when": [{"field": "a", "op": "is_true"}]}, {` + ok + `, "when": [{"field": "a", "op": "is_true"}]}`), "duplicate id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseRules("rules.json", []byte(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseRules error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "rules.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestOutputShape(t *testing.T) {
	out, err := audit(shipped(t), input(t, `{"resources": []}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	if got, want := string(b), `{"findings":[],"truncated":false,"summary":{"critical":0,"high":0,"medium":0,"low":0,"resources":0,"rules":15},"passed":true}`; got != want {
		t.Errorf("empty audit\n got %s\nwant %s", got, want)
	}
}
