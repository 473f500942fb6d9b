package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/outcome"
	"github.com/trustcells/tcc/mcp/prompt"
)

// The fakes stand in for the daemon: callers are chosen by a test header.

type fakeAuth map[string]*Caller

func (f fakeAuth) Authenticate(r *http.Request) (*Caller, error) {
	if c, ok := f[r.Header.Get("X-Test-Caller")]; ok {
		return c, nil
	}
	return nil, &AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Msg: "who are you?"}
}

func cellOf(t *testing.T, name, tenant string, phase manifest.Phase) Cell {
	t.Helper()
	m, err := manifest.Parse([]byte(fmt.Sprintf(`version: tcc/v1
name: %s
description: test cell %s
entrypoint: bin
input: {type: object}
output: {type: object}
phase: %s
files: {bin: sha256:%s}
`, name, name, phase, strings.Repeat("0", 64))))
	if err != nil {
		t.Fatal(err)
	}
	return Cell{Name: name, Identity: string(m.Identity()), Tenant: tenant, Manifest: m}
}

type fakeCells []Cell

func (f fakeCells) Heads(context.Context) ([]Cell, error) { return f, nil }
func (f fakeCells) Head(_ context.Context, name string) (*Cell, error) {
	for i := range f {
		if f[i].Name == name {
			return &f[i], nil
		}
	}
	return nil, ErrNotFound
}
func (f fakeCells) Lineage(_ context.Context, _ *Caller, name string) (json.RawMessage, error) {
	return json.RawMessage(`{"name":"` + name + `"}`), nil
}

type fakeRunner struct{}

func (fakeRunner) Call(_ context.Context, c *Caller, cell string, input json.RawMessage, progress func(Progress)) (*outcome.Outcome, error) {
	progress(Progress{Progress: 1, Total: 2, Message: "half"})
	switch cell {
	case "media":
		return &outcome.Outcome{Verdict: outcome.OK, Result: json.RawMessage(`{"content":[{"type":"image","data":"AAEC","mimeType":"image/png"}]}`)}, nil
	case "broken":
		return &outcome.Outcome{Verdict: outcome.Violation, Message: "cell broken was stopped: it used the undeclared syscall socket"}, nil
	case "guarded": // the daemon's own scope check, against the cell that runs
		return nil, fmt.Errorf("cell guarded is an actuate-phase cell now: %w", ErrForbidden)
	}
	if bytes.Contains(input, []byte("bad")) {
		return nil, fmt.Errorf("input for cell %s: does not match the input schema: %w", cell, ErrInvalidInput)
	}
	return &outcome.Outcome{Verdict: outcome.OK, Result: json.RawMessage(`{"echo":` + string(input) + `,"by":"` + c.ID + `"}`)}, nil
}

type fakeAudit struct{}

func (fakeAudit) Checkpoint() []byte { return []byte("tccd\n1\nabc=\n") }
func (fakeAudit) Event(context.Context, *Caller, uint64) (json.RawMessage, error) {
	return nil, ErrNotFound
}
func (fakeAudit) Recent(context.Context, *Caller, int) ([]json.RawMessage, error) { return nil, nil }

type fakeVault struct {
	mu    sync.Mutex
	docs  []Document
	reads []string // "caller uri"
}

func (f *fakeVault) Documents(context.Context) ([]Document, error) { return f.docs, nil }
func (f *fakeVault) Lookup(_ context.Context, uri string) (*Document, error) {
	for i := range f.docs {
		if f.docs[i].URI() == uri || f.docs[i].Alias == uri {
			return &f.docs[i], nil
		}
	}
	return nil, ErrNotFound
}
func (f *fakeVault) Read(_ context.Context, c *Caller, d *Document) ([]byte, error) {
	f.mu.Lock()
	f.reads = append(f.reads, c.ID+" "+d.URI())
	f.mu.Unlock()
	return []byte("content of " + d.Path), nil
}

type fakePrompts []Prompt

func (f fakePrompts) Heads(context.Context) ([]Prompt, error) { return f, nil }
func (f fakePrompts) Head(_ context.Context, name string) (*Prompt, error) {
	for i := range f {
		if f[i].Name == name {
			return &f[i], nil
		}
	}
	return nil, ErrNotFound
}

var read = []string{ScopeToolsList, ScopeToolsCall, ScopeResourcesRead, ScopePromptsGet}

func newTestServer(t *testing.T) (*httptest.Server, *fakeVault) {
	t.Helper()
	p, err := prompt.Parse([]byte(`version: tcc-prompt/v1
name: review
description: Review a policy.
arguments: [{name: topic, required: true}]
messages:
  - {role: user, text: "Review {{topic}}."}
  - {role: user, resource: "vault://acme/policy.md"}
`))
	if err != nil {
		t.Fatal(err)
	}
	vault := &fakeVault{docs: []Document{
		{Tenant: "acme", Path: "policy.md", MIME: "text/markdown", Digest: "sha256:aa"},
		{Tenant: "globex", Path: "secret.md", Alias: "test://secret", MIME: "text/plain", Digest: "sha256:bb"},
	}}
	s, err := New(context.Background(), Options{
		Version: "test",
		Auth: fakeAuth{
			"admin":    {ID: "uid:0", Admin: true},
			"acme":     {ID: "jti:acme", Tenant: "acme", Scopes: read},
			"listonly": {ID: "jti:list", Tenant: "acme", Scopes: []string{ScopeToolsList}},
		},
		Cells:       fakeCells{cellOf(t, "echo", "", manifest.PhaseAnalyze), cellOf(t, "media", "acme", manifest.PhaseAnalyze), cellOf(t, "broken", "", manifest.PhaseAnalyze), cellOf(t, "secret", "globex", manifest.PhaseAnalyze), cellOf(t, "deploy", "", manifest.PhaseActuate), cellOf(t, "guarded", "", manifest.PhaseAnalyze)},
		Runner:      fakeRunner{},
		Audit:       fakeAudit{},
		Vault:       vault,
		Prompts:     fakePrompts{{Prompt: p, Identity: string(p.Identity()), Tenant: "acme"}},
		Logger:      nil,
		MaxSessions: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, vault
}

// post sends one raw JSON-RPC body and returns status, WWW-Authenticate
// and the decoded error (if the body is one).
func post(t *testing.T, url, who, origin, body string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Test-Caller", who)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var msg struct {
		Error map[string]any `json:"error"`
	}
	_ = json.Unmarshal(b, &msg)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), msg.Error
}

func TestGuard(t *testing.T) {
	ts, _ := newTestServer(t)
	url := ts.URL + "/mcp"
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	tests := []struct {
		name, who, origin, body string
		status                  int
		code                    float64
		msg, challenge          string
	}{
		{"no identity", "", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 401, CodeUnauthorized, "who are you", `error="invalid_token"`},
		{"foreign origin", "admin", "http://evil.example.com", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 403, CodeForbidden, "not local", ""},
		{"local origin", "admin", "http://localhost:6274", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 200, 0, "", ""},
		{"loopback origin", "admin", "http://127.0.0.1:9", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 200, 0, "", ""},
		{"not json", "admin", "", `{"jsonrpc":`, 400, -32700, "parse error", ""},
		{"not json-rpc", "admin", "", `{"hello":"world"}`, 400, -32600, "invalid request", ""},
		{"empty batch", "admin", "", `[]`, 400, -32600, "invalid request", ""},
		{"too large", "admin", "", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", DefaultMaxRequest) + `"}}`, 413, CodeTooLarge, "larger than 4194304 bytes (4 MiB)", ""},
		{"missing scope", "listonly", "", call("echo"), 403, CodeForbidden, "needs scope tools:call", `error="insufficient_scope", scope="tools:call"`},
		{"actuate scope", "acme", "", call("deploy"), 403, CodeForbidden, "actuate-phase", `scope="cells:actuate"`},
		{"other tenant's vault", "acme", "", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"vault://globex/secret.md"}}`, 403, CodeForbidden, "belongs to tenant globex", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, challenge, jerr := post(t, url, tt.who, tt.origin, tt.body)
			if status != tt.status {
				t.Fatalf("status = %d, want %d (error %v)", status, tt.status, jerr)
			}
			if tt.code == 0 {
				return
			}
			if jerr == nil || jerr["code"] != tt.code || !strings.Contains(fmt.Sprint(jerr["message"]), tt.msg) {
				t.Errorf("error = %v, want code %v and a message containing %q", jerr, tt.code, tt.msg)
			}
			if !strings.Contains(challenge, tt.challenge) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %q", challenge, tt.challenge)
			}
		})
	}
}

// connect is an SDK client acting as who.
func connect(t *testing.T, ts *httptest.Server, who string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	hc := &http.Client{Transport: headerRT{who}}
	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, opts)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: ts.URL + "/mcp", HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

type headerRT struct{ who string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Caller", h.who)
	return http.DefaultTransport.RoundTrip(r)
}

func toolNames(t *testing.T, cs *sdk.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

func TestToolsByTenant(t *testing.T) {
	ts, _ := newTestServer(t)
	ctx := context.Background()
	admin, acme := connect(t, ts, "admin", nil), connect(t, ts, "acme", nil)
	if got, want := toolNames(t, admin), []string{"broken", "deploy", "echo", "guarded", "media", "secret"}; !slices.Equal(got, want) {
		t.Errorf("admin tools = %v, want %v", got, want)
	}
	if got, want := toolNames(t, acme), []string{"broken", "deploy", "echo", "guarded", "media"}; !slices.Equal(got, want) {
		t.Errorf("acme tools = %v, want %v", got, want)
	}

	var progress []float64
	var mu sync.Mutex
	prog := connect(t, ts, "acme", &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
		mu.Lock()
		progress = append(progress, r.Params.Progress)
		mu.Unlock()
	}})
	params := &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"x": 1}}
	params.SetProgressToken("p1")
	res, err := prog.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("echo: %v %+v", err, res)
	}
	if b, _ := json.Marshal(res.StructuredContent); string(b) != `{"by":"jti:acme","echo":{"x":1}}` {
		t.Errorf("structuredContent = %s", b)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(progress)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			if n == 0 {
				t.Error("no progress notification")
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	res, err = acme.CallTool(ctx, &sdk.CallToolParams{Name: "media"})
	if err != nil || len(res.Content) != 1 {
		t.Fatalf("media: %v %+v", err, res)
	}
	if img, ok := res.Content[0].(*sdk.ImageContent); !ok || img.MIMEType != "image/png" {
		t.Errorf("media content = %#v, want the cell's image block", res.Content[0])
	}

	res, err = acme.CallTool(ctx, &sdk.CallToolParams{Name: "broken"})
	if err != nil || !res.IsError || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "undeclared syscall socket") {
		t.Errorf("broken: %v %+v, want a tool error naming the syscall", err, res)
	}
	res, err = acme.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"bad": true}})
	if err != nil || !res.IsError || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "input schema") {
		t.Errorf("bad input: %v %+v, want a tool error", err, res)
	}
	if _, err := acme.CallTool(ctx, &sdk.CallToolParams{Name: "secret"}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Errorf("other tenant's tool: %v, want unknown tool", err)
	}
	if _, err := acme.CallTool(ctx, &sdk.CallToolParams{Name: "guarded"}); err == nil || !strings.Contains(err.Error(), "forbidden: cell guarded is an actuate-phase cell now") {
		t.Errorf("a call the daemon refuses: %v, want forbidden", err)
	}
}

// TestSessionCap: a caller other than an admin holds at most MaxSessions
// stateful sessions; the next initialize is 429.
func TestSessionCap(t *testing.T) {
	ts, _ := newTestServer(t)
	legacy := &sdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"}
	connectAt := func(who string) error {
		c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
		cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: ts.URL + "/mcp", HTTPClient: &http.Client{Transport: headerRT{who}}, MaxRetries: -1}, legacy)
		if err == nil {
			t.Cleanup(func() { cs.Close() })
		}
		return err
	}
	for i := range 2 {
		if err := connectAt("acme"); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	if status, _, jerr := post(t, ts.URL+"/mcp", "acme", "", init); status != http.StatusTooManyRequests || jerr["code"] != float64(CodeTooMany) {
		t.Errorf("third session: %d %v, want 429 %d", status, jerr, CodeTooMany)
	}
	for range 3 {
		if err := connectAt("admin"); err != nil {
			t.Errorf("admins are not capped: %v", err)
		}
	}
}

func TestBearerChallenge(t *testing.T) {
	e := &AuthError{Code: "invalid_token", Msg: "a \"quoted\" \\ word\nand a line"}
	want := `Bearer realm="tccd", error="invalid_token", error_description="a \"quoted\" \\ word and a line"`
	if got := e.Challenge(); got != want {
		t.Errorf("Challenge() = %s, want %s", got, want)
	}
}

func TestResourcesAndPrompts(t *testing.T) {
	ts, vault := newTestServer(t)
	ctx := context.Background()
	acme := connect(t, ts, "acme", nil)
	res, err := acme.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	for _, want := range []string{"vault://acme/policy.md", "tcc://cells/echo", "tcc://ledger/checkpoint"} {
		if !slices.Contains(uris, want) {
			t.Errorf("resources %v lack %s", uris, want)
		}
	}
	for _, hidden := range []string{"vault://globex/secret.md", "test://secret", "tcc://cells/secret"} {
		if slices.Contains(uris, hidden) {
			t.Errorf("acme sees %s", hidden)
		}
	}
	rr, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "vault://acme/policy.md"})
	if err != nil || rr.Contents[0].Text != "content of policy.md" {
		t.Fatalf("read: %v %+v", err, rr)
	}
	if _, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "test://secret"}); err == nil {
		t.Error("acme read globex's document through its alias")
	}
	if _, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "tcc://cells/secret"}); err == nil {
		t.Error("acme read globex's cell contract")
	}
	if _, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "tcc://cells/echo"}); err != nil {
		t.Errorf("shared cell contract: %v", err)
	}

	gp, err := acme.GetPrompt(ctx, &sdk.GetPromptParams{Name: "review", Arguments: map[string]string{"topic": "access"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(gp.Messages) != 2 || gp.Messages[0].Content.(*sdk.TextContent).Text != "Review access." {
		t.Fatalf("messages = %+v", gp.Messages)
	}
	if er, ok := gp.Messages[1].Content.(*sdk.EmbeddedResource); !ok || er.Resource.Text != "content of policy.md" {
		t.Errorf("embedded = %#v", gp.Messages[1].Content)
	}
	meta, _ := gp.Meta[MetaPrompt].(map[string]any)
	if meta["name"] != "review" || !strings.HasPrefix(fmt.Sprint(meta["identity"]), "sha256:") {
		t.Errorf("_meta = %v", gp.Meta)
	}
	if _, err := acme.GetPrompt(ctx, &sdk.GetPromptParams{Name: "review"}); err == nil || !strings.Contains(err.Error(), `needs argument "topic"`) {
		t.Errorf("missing argument: %v", err)
	}
	cr, err := acme.Complete(ctx, &sdk.CompleteParams{Ref: &sdk.CompleteReference{Type: "ref/resource", URI: "vault://{tenant}/{+path}"},
		Argument: sdk.CompleteParamsArgument{Name: "path", Value: "pol"}, Context: &sdk.CompleteContext{Arguments: map[string]string{"tenant": "acme"}}})
	if err != nil || !slices.Equal(cr.Completion.Values, []string{"policy.md"}) {
		t.Errorf("complete vault path: %v %+v", err, cr)
	}
	cr, err = acme.Complete(ctx, &sdk.CompleteParams{Ref: &sdk.CompleteReference{Type: "ref/resource", URI: "vault://{tenant}/{+path}"},
		Argument: sdk.CompleteParamsArgument{Name: "tenant", Value: ""}})
	if err != nil || !slices.Equal(cr.Completion.Values, []string{"acme"}) {
		t.Errorf("complete vault tenant (globex must not show): %v %+v", err, cr)
	}
	vault.mu.Lock()
	defer vault.mu.Unlock()
	if want := []string{"jti:acme vault://acme/policy.md", "jti:acme vault://acme/policy.md"}; !slices.Equal(vault.reads, want) {
		t.Errorf("recorded reads = %v, want %v", vault.reads, want)
	}
}

func TestCheckOrigin(t *testing.T) {
	for origin, ok := range map[string]bool{
		"": true, "http://localhost": true, "https://localhost:8443": true, "http://127.0.0.1:6274": true, "http://127.9.9.9": true,
		"http://[::1]:3000": true, "null": false, "http://evil.example.com": false, "http://localhost.evil.com": false,
		"http://10.0.0.1": false, "file:///etc/passwd": false,
	} {
		if err := checkOrigin(origin); (err == nil) != ok {
			t.Errorf("checkOrigin(%q) = %v, want ok=%v", origin, err, ok)
		}
	}
}
