package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/mcp"
)

// mcpEnv is one daemon for every MCP test: tenants acme (uid 4242 and
// tokens) and globex (tokens), the admin group adminGID, MCP on loopback
// TCP too, shared and tenant-only cells, vault documents of both tenants
// and a prompt of acme.
type mcpEnv struct {
	*Env
	tcpURL   string
	tokens   map[string]string // "acme", "globex", "list" → bearer token
	promptID string
	vaultDoc string // content of vault://acme/policies/iso.md
}

const sha256ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

func newMCPEnv(t *testing.T) *mcpEnv {
	t.Helper()
	e := NewEnv(t)
	tenants := filepath.Join(e.Dir, "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(`tenants:
  acme:
    users: ["4242"]
    scopes: [tools:list, tools:call, resources:read, prompts:get]
  globex:
    scopes: [tools:list]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.args = append(e.args, "--tenants", tenants, "--listen-tcp", "127.0.0.1:0", "--admin-group", fmt.Sprint(adminGID))
	e.Start()
	m := &mcpEnv{Env: e, tokens: map[string]string{}}
	m.readTCPURL(t)

	e.Register("cells/examples/sha256", nil)
	e.Register("cells/examples/config-audit", nil)
	e.Register("test/conformance/cells/sleep", nil)
	e.Register("cells/examples/sha256", func(y string) string {
		return strings.Replace(strings.Replace(y, "name: sha256", "name: sha256-actuate", 1), "phase: analyze", "phase: actuate", 1)
	})
	if _, err := e.Client().Register(context.Background(), mustOpen(t, e.Signed("cells/examples/json-query", nil)), "globex"); err != nil {
		t.Fatal(err)
	}

	m.vaultDoc = "# ISO 27001\nAccess to production is reviewed quarterly.\n"
	for _, d := range []struct{ tenant, path, content string }{
		{"acme", "policies/iso.md", m.vaultDoc},
		{"globex", "secret.md", "globex only\n"},
	} {
		f := filepath.Join(e.Dir, strings.ReplaceAll(d.path, "/", "_"))
		if err := os.WriteFile(f, []byte(d.content), 0o644); err != nil {
			t.Fatal(err)
		}
		e.MustCtl("vault", "put", d.tenant, d.path, f)
	}

	pdir := filepath.Join(e.Dir, "prompt-audit")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pdir, "prompt.yaml"), []byte(`version: tcc-prompt/v1
name: audit-review
description: Review a system against acme's ISO 27001 policy.
arguments:
  - {name: system, description: The system to review, required: true}
messages:
  - role: user
    text: Review {{system}} against the policy below and list every gap.
  - role: user
    resource: vault://acme/policies/iso.md
`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustCtl("prompt", "pack", pdir, "-o", pdir+".prompt")
	e.MustCtl("prompt", "sign", pdir+".prompt", "--key", e.Key)
	var reg api.Registered
	if err := json.Unmarshal([]byte(e.MustCtl("prompt", "register", pdir+".prompt", "--tenant", "acme", "--json")), &reg); err != nil {
		t.Fatal(err)
	}
	m.promptID = reg.Identity

	for name, args := range map[string][]string{
		"acme":   {"--tenant", "acme", "--scope", "tools:list,tools:call,resources:read,prompts:get"},
		"globex": {"--tenant", "globex", "--scope", "tools:list,tools:call,resources:read,prompts:get"},
		"list":   {"--tenant", "acme", "--scope", "tools:list"},
	} {
		out, errOut, code := e.CtlSplit(nil, append([]string{"token", "issue", "--ttl", "1h"}, args...)...)
		if code != 0 {
			t.Fatalf("token issue: %s", errOut)
		}
		m.tokens[name] = strings.TrimSpace(out)
	}
	return m
}

// readTCPURL reads the daemon's loopback MCP URL from its log (the last
// one: a restart picks a new port).
func (m *mcpEnv) readTCPURL(t *testing.T) {
	t.Helper()
	log := mustRead(t, m.Log)
	u := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+/mcp)`).FindAllSubmatch(log, -1)
	if u == nil {
		t.Fatalf("tccd did not log its TCP MCP address:\n%s", log)
	}
	m.tcpURL = string(u[len(u)-1][1])
}

// socketHTTP is an HTTP client whose requests go to tccd's socket, with
// the bearer token if one is given.
func socketHTTP(socket, token string) *http.Client {
	c := api.NewClient(socket)
	c.Token = token
	return c.HTTPClient()
}

// session connects an SDK client over the Unix socket: as root (an admin)
// with token "", otherwise as the token's caller.
func (m *mcpEnv) session(t *testing.T, token string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	return m.sessionAt(t, token, opts, "")
}

// sessionAt is session at a protocol version ("" = the SDK's latest,
// 2026-07-28, stateless; "2025-11-25" = the initialize handshake and a
// stateful session).
func (m *mcpEnv) sessionAt(t *testing.T, token string, opts *sdk.ClientOptions, version string) *sdk.ClientSession {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "tcc-test", Version: "1"}, opts)
	cs, err := c.Connect(context.Background(), &sdk.StreamableClientTransport{
		Endpoint: api.MCPEndpoint, HTTPClient: socketHTTP(m.Socket, token), MaxRetries: -1,
	}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func TestMCP(t *testing.T) {
	m := newMCPEnv(t)
	ctx := context.Background()
	admin := m.session(t, "", nil)

	t.Run("tools", func(t *testing.T) {
		res, err := admin.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*sdk.Tool{}
		for _, tool := range res.Tools {
			byName[tool.Name] = tool
		}
		for _, want := range []string{"sha256", "config-audit", "sleep", "sha256-actuate", "json-query"} {
			if byName[want] == nil {
				t.Errorf("tools/list lacks %s", want)
			}
		}
		tool := byName["sha256"]
		if tool == nil {
			t.FailNow()
		}
		in, _ := json.Marshal(tool.InputSchema)
		out, _ := json.Marshal(tool.OutputSchema)
		if !strings.Contains(string(in), `"oneOf"`) || !strings.Contains(string(out), `"pattern":"^[0-9a-f]{64}$"`) {
			t.Errorf("schemas not from the manifest: input %s output %s", in, out)
		}
		a := tool.Annotations
		if a == nil || !a.ReadOnlyHint || !a.IdempotentHint || a.DestructiveHint == nil || *a.DestructiveHint || a.OpenWorldHint == nil || *a.OpenWorldHint || tool.Title != "SHA-256 digest" {
			t.Errorf("annotations = %+v, title %q", a, tool.Title)
		}
		if !strings.HasPrefix(fmt.Sprint(tool.Meta[mcp.MetaIdentity]), "sha256:") {
			t.Errorf("_meta = %v, want the head identity", tool.Meta)
		}

		r, err := admin.CallTool(ctx, &sdk.CallToolParams{Name: "sha256", Arguments: map[string]any{"text": "abc"}})
		if err != nil || r.IsError {
			t.Fatalf("call sha256: %v %+v", err, r)
		}
		sc, _ := r.StructuredContent.(map[string]any)
		if sc["sha256"] != sha256ABC || sc["bytes"] != float64(3) {
			t.Errorf("structuredContent = %v", r.StructuredContent)
		}
		if len(r.Content) != 1 || !strings.Contains(r.Content[0].(*sdk.TextContent).Text, sha256ABC) {
			t.Errorf("content = %+v, want the output as text", r.Content)
		}
		if call, _ := r.Meta[mcp.MetaCall].(map[string]any); call["verdict"] != "ok" || call["wipe_clean"] != true {
			t.Errorf("_meta = %v", r.Meta)
		}

		// Input is validated before any sandbox exists: a tool error the
		// model can act on.
		r, err = admin.CallTool(ctx, &sdk.CallToolParams{Name: "sha256", Arguments: map[string]any{"text": 5}})
		if err != nil || !r.IsError || !strings.Contains(r.Content[0].(*sdk.TextContent).Text, "input schema") {
			t.Errorf("invalid input: %v %+v", err, r)
		}
		if _, err := admin.CallTool(ctx, &sdk.CallToolParams{Name: "no-such-cell"}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
			t.Errorf("unknown tool: %v", err)
		}
	})

	t.Run("progress", func(t *testing.T) {
		var mu sync.Mutex
		var got []*sdk.ProgressNotificationParams
		cs := m.session(t, "", &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			mu.Lock()
			got = append(got, r.Params)
			mu.Unlock()
		}})
		params := &sdk.CallToolParams{Name: "config-audit", Arguments: map[string]any{"resources": []any{
			map[string]any{"type": "storage_bucket", "name": "logs", "public": true},
			map[string]any{"type": "iam_user", "name": "ci", "mfa": false},
		}}}
		params.SetProgressToken("audit-1")
		r, err := cs.CallTool(ctx, params)
		if err != nil || r.IsError {
			t.Fatalf("config-audit: %v %+v", err, r)
		}
		waitFor(t, 5*time.Second, "progress notifications from config-audit", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= 2
		})
		mu.Lock()
		defer mu.Unlock()
		for _, p := range got {
			if p.ProgressToken != "audit-1" {
				t.Errorf("progress token %v, want audit-1", p.ProgressToken)
			}
		}
		if !strings.HasPrefix(got[0].Message, "loaded") {
			t.Errorf("first progress message %q", got[0].Message)
		}
	})

	t.Run("cancel kills the sandbox", func(t *testing.T) {
		started := make(chan struct{})
		var once sync.Once
		cs := m.session(t, "", &sdk.ClientOptions{ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) {
			once.Do(func() { close(started) })
		}})
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-started:
			case <-time.After(15 * time.Second):
			}
			cancel()
		}()
		params := &sdk.CallToolParams{Name: "sleep", Arguments: map[string]any{"seconds": 20}}
		params.SetProgressToken("sleep-1")
		begin := time.Now()
		_, err := cs.CallTool(cctx, params)
		if err == nil {
			t.Fatal("a cancelled call returned a result")
		}
		var end map[string]any
		waitFor(t, 15*time.Second, "a call.end of sleep with verdict cancelled", func() bool {
			end = m.findEvent(t, admin, func(ev map[string]any) bool {
				return ev["type"] == "call.end" && ev["cell"] == "sleep"
			})
			return end != nil
		})
		if end["verdict"] != "cancelled" {
			t.Errorf("call.end verdict %v, want cancelled", end["verdict"])
		}
		if w, _ := end["wipe"].(map[string]any); w["clean"] != true {
			t.Errorf("wipe = %v", end["wipe"])
		}
		if d := time.Since(begin); d > 12*time.Second {
			t.Errorf("the 20 s call took %v to end after cancel", d)
		}
		// Nothing of the sandbox is left while the daemon runs on.
		for _, sub := range []string{"state", "rootfs"} {
			if ents, _ := os.ReadDir(filepath.Join(m.State, "sandboxes", sub)); len(ents) > 0 {
				t.Errorf("sandbox %s left: %v", sub, ents)
			}
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(m.State, "sandboxes")) {
			t.Error("a sandbox mount is left")
		}
	})

	t.Run("tools/list_changed after a registration", func(t *testing.T) {
		// A 2026-07-28 client (subscriptions/listen) and a 2025-11-25 one
		// (stateful session, GET stream).
		var sessions []*sdk.ClientSession
		var chans []chan struct{}
		for _, version := range []string{"", "2025-11-25"} {
			changed := make(chan struct{}, 8)
			chans = append(chans, changed)
			sessions = append(sessions, m.sessionAt(t, "", &sdk.ClientOptions{ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
				changed <- struct{}{}
			}}, version))
		}
		if v := sessions[1].InitializeResult().ProtocolVersion; v != "2025-11-25" {
			t.Fatalf("legacy session negotiated %s", v)
		}
		m.Register("cells/examples/sha256", func(y string) string { return strings.Replace(y, "name: sha256", "name: sha256-late", 1) })
		for i, changed := range chans {
			select {
			case <-changed:
			case <-time.After(10 * time.Second):
				t.Fatalf("session %d: no notifications/tools/list_changed within 10s of a registration", i)
			}
			res, err := sessions[i].ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(res.Tools, func(tool *sdk.Tool) bool { return tool.Name == "sha256-late" }) {
				t.Errorf("session %d: tools/list after the notification lacks sha256-late", i)
			}
		}
		// The stateful path runs calls too.
		r, err := sessions[1].CallTool(ctx, &sdk.CallToolParams{Name: "sha256-late", Arguments: map[string]any{"text": "abc"}})
		if err != nil || r.IsError || r.StructuredContent.(map[string]any)["sha256"] != sha256ABC {
			t.Errorf("call on a 2025-11-25 session: %v %+v", err, r)
		}
	})

	t.Run("resources", func(t *testing.T) {
		acme := m.session(t, m.tokens["acme"], nil)
		rr, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "vault://acme/policies/iso.md"})
		if err != nil {
			t.Fatal(err)
		}
		if c := rr.Contents[0]; c.Text != m.vaultDoc || !strings.HasPrefix(c.MIMEType, "text/markdown") {
			t.Errorf("vault read = %q (%s), want %q", c.Text, c.MIMEType, m.vaultDoc)
		}
		jti := tokenJTI(t, m.tokens["acme"])
		ev := m.findEvent(t, admin, func(ev map[string]any) bool {
			attrs, _ := ev["attrs"].(map[string]any)
			return ev["type"] == "vault.read" && ev["caller"] == "jti:"+jti && attrs["path"] == "policies/iso.md" && ev["tenant"] == "acme"
		})
		if ev == nil {
			t.Error("the vault read was not recorded as a vault.read event")
		} else if attrs := ev["attrs"].(map[string]any); !strings.HasPrefix(fmt.Sprint(attrs["sha256"]), "sha256:") {
			t.Errorf("vault.read attrs = %v", attrs)
		}

		rr, err = acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "tcc://cells/sha256"})
		if err != nil || !strings.Contains(rr.Contents[0].Text, `"identity": "sha256:`) {
			t.Errorf("cell resource: %v %+v", err, rr)
		}
		rr, err = acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "tcc://ledger/checkpoint"})
		if err != nil || !strings.Contains(rr.Contents[0].Text, "\n— ") {
			t.Errorf("checkpoint: %v %+v, want a signed note", err, rr)
		}
		// acme sees its own events only.
		rr, err = acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "tcc://ledger/events"})
		if err != nil {
			t.Fatal(err)
		}
		var evs []map[string]any
		_ = json.Unmarshal([]byte(rr.Contents[0].Text), &evs)
		if len(evs) == 0 {
			t.Error("acme sees no events of its own")
		}
		for _, ev := range evs {
			if ev["tenant"] != "acme" {
				t.Errorf("acme sees an event of tenant %v: %v", ev["tenant"], ev["type"])
			}
		}
	})

	t.Run("prompts", func(t *testing.T) {
		acme := m.session(t, m.tokens["acme"], nil)
		lp, err := acme.ListPrompts(ctx, nil)
		if err != nil || len(lp.Prompts) != 1 || lp.Prompts[0].Name != "audit-review" || !lp.Prompts[0].Arguments[0].Required {
			t.Fatalf("prompts/list: %v %+v", err, lp)
		}
		gp, err := acme.GetPrompt(ctx, &sdk.GetPromptParams{Name: "audit-review", Arguments: map[string]string{"system": "billing"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(gp.Messages) != 2 || gp.Messages[0].Content.(*sdk.TextContent).Text != "Review billing against the policy below and list every gap." {
			t.Fatalf("messages = %+v", gp.Messages)
		}
		if er, ok := gp.Messages[1].Content.(*sdk.EmbeddedResource); !ok || er.Resource.Text != m.vaultDoc || er.Resource.URI != "vault://acme/policies/iso.md" {
			t.Errorf("embedded resource = %#v", gp.Messages[1].Content)
		}
		meta, _ := gp.Meta[mcp.MetaPrompt].(map[string]any)
		if meta["identity"] != m.promptID {
			t.Errorf("_meta %v, want identity %s", gp.Meta, m.promptID)
		}
		globex := m.session(t, m.tokens["globex"], nil)
		if lp, err := globex.ListPrompts(ctx, nil); err != nil || len(lp.Prompts) != 0 {
			t.Errorf("globex prompts/list = %v %+v, want none", err, lp)
		}
	})

	t.Run("tenants", func(t *testing.T) {
		acme, globex := m.session(t, m.tokens["acme"], nil), m.session(t, m.tokens["globex"], nil)
		names := func(cs *sdk.ClientSession) []string {
			res, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var n []string
			for _, tool := range res.Tools {
				n = append(n, tool.Name)
			}
			return n
		}
		if n := names(acme); slices.Contains(n, "json-query") || !slices.Contains(n, "sha256") {
			t.Errorf("acme tools = %v: want the shared cells, not globex's json-query", n)
		}
		if n := names(globex); !slices.Contains(n, "json-query") {
			t.Errorf("globex tools = %v, want json-query", n)
		}
		if _, err := acme.CallTool(ctx, &sdk.CallToolParams{Name: "json-query", Arguments: map[string]any{}}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
			t.Errorf("acme calling globex's cell: %v", err)
		}
		_, err := acme.ReadResource(ctx, &sdk.ReadResourceParams{URI: "vault://globex/secret.md"})
		if err == nil || !strings.Contains(err.Error(), "belongs to tenant globex") {
			t.Errorf("acme reading globex's vault: %v, want a refusal", err)
		}
		if rr, err := globex.ReadResource(ctx, &sdk.ReadResourceParams{URI: "vault://globex/secret.md"}); err != nil || rr.Contents[0].Text != "globex only\n" {
			t.Errorf("globex reading its own vault: %v", err)
		}
		lr, err := acme.ListResources(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range lr.Resources {
			if strings.HasPrefix(r.URI, "vault://globex/") || r.URI == "tcc://cells/json-query" {
				t.Errorf("acme lists %s", r.URI)
			}
		}
	})

	t.Run("stdio bridge", func(t *testing.T) {
		got := m.bridge(t, nil, "", []string{
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`,
			`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"sha256","arguments":{"text":"abc"}}}`,
			`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"config-audit","arguments":{"resources":[{"type":"iam_user","name":"ci"}]},"_meta":{"progressToken":"b-1"}}}`,
		}, 4)
		if !strings.Contains(string(got[0]), `"method":"notifications/progress"`) || !strings.Contains(string(got[0]), `"progressToken":"b-1"`) {
			t.Errorf("no progress notification through the bridge; other lines:\n%s", got[0])
		}
		var init struct {
			Result struct {
				ProtocolVersion string `json:"protocolVersion"`
				ServerInfo      struct{ Name string }
			}
		}
		_ = json.Unmarshal(got[1], &init)
		if init.Result.ProtocolVersion != "2025-06-18" || init.Result.ServerInfo.Name != "tccd" {
			t.Errorf("initialize = %s", got[1])
		}
		if !strings.Contains(string(got[2]), `"name":"sha256"`) || !strings.Contains(string(got[2]), `"inputSchema"`) {
			t.Errorf("tools/list = %s", got[2])
		}
		var call struct {
			Result struct {
				StructuredContent map[string]any `json:"structuredContent"`
				IsError           bool           `json:"isError"`
			}
		}
		_ = json.Unmarshal(got[3], &call)
		if call.Result.IsError || call.Result.StructuredContent["sha256"] != sha256ABC {
			t.Errorf("tools/call = %s", got[3])
		}
	})

	t.Run("stdio bridge with a token", func(t *testing.T) {
		got := m.bridge(t, nil, m.tokens["acme"], []string{
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`,
			`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		}, 2)
		if s := string(got[2]); !strings.Contains(s, `"name":"sha256"`) || strings.Contains(s, `"name":"json-query"`) {
			t.Errorf("tools/list with acme's token = %s", s)
		}
	})

	t.Run("stdio bridge as a tenant's local user", func(t *testing.T) {
		// uid 4242 is acme's in the tenants file: peer credentials, no token.
		cred := &syscall.Credential{Uid: 4242, Gid: 4242}
		out, errOut, code := m.ctlAs(t, cred, nil, "status", "--json")
		var st api.Status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Caller.Tenant != "acme" || st.Caller.Admin {
			t.Fatalf("status as uid 4242: exit %d, %s %s", code, out, errOut)
		}
		got := m.bridge(t, cred, "", []string{
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`,
			`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		}, 2)
		if s := string(got[2]); !strings.Contains(s, `"name":"sha256"`) || strings.Contains(s, `"name":"json-query"`) {
			t.Errorf("tools/list as acme's user = %s", s)
		}
	})

	t.Run("auth", func(t *testing.T) { testAuth(t, m) })
	t.Run("control API", func(t *testing.T) { testControl(t, m) }) // auth_test.go

	t.Run("stdio bridge reconnects after a restart", func(t *testing.T) {
		changed := make(chan struct{}, 64)
		c := sdk.NewClient(&sdk.Implementation{Name: "host", Version: "1"}, &sdk.ClientOptions{ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		}})
		cmd := exec.Command(filepath.Join(bin, "tccctl"), "mcp")
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		host, err := c.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		m.Stop()
		m.Start()
		m.readTCPURL(t)
		m.Register("cells/examples/sha256", func(y string) string { return strings.Replace(y, "name: sha256", "name: sha256-restarted", 1) })
		waitFor(t, 30*time.Second, "sha256-restarted through the bridge after tccd restarted", func() bool {
			res, err := host.ListTools(ctx, nil)
			return err == nil && slices.ContainsFunc(res.Tools, func(tool *sdk.Tool) bool { return tool.Name == "sha256-restarted" })
		})
		select {
		case <-changed:
		default:
			t.Error("the host got no notifications/tools/list_changed")
		}
		r, err := host.CallTool(ctx, &sdk.CallToolParams{Name: "sha256-restarted", Arguments: map[string]any{"text": "abc"}})
		if err != nil || r.IsError {
			t.Errorf("call through the reconnected bridge: %v %+v; bridge stderr:\n%s", err, r, stderr.String())
		}
	})

	t.Run("stdio bridge exit codes", func(t *testing.T) {
		if _, errOut, code := m.CtlSplit(nil, "mcp"); code != 0 {
			t.Errorf("tccctl mcp with stdin closed: exit %d, %s", code, errOut)
		}
		cmd := exec.Command(filepath.Join(bin, "tccctl"), "mcp")
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket, "TCC_TOKEN=not-a-token")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 || !strings.Contains(string(out), "not a JWT") {
			t.Errorf("tccctl mcp with a bad TCC_TOKEN: %v, %s; want exit 5", err, out)
		}
	})

	// Last: it changes who uid 4242 is.
	t.Run("tenants file reloaded on SIGHUP", func(t *testing.T) {
		tenantOf := func() string {
			out, errOut, code := m.ctlAs(t, &syscall.Credential{Uid: 4242, Gid: 4242}, nil, "status", "--json")
			var st api.Status
			if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
				t.Fatalf("status as uid 4242: exit %d, %s %s", code, out, errOut)
			}
			return st.Caller.Tenant
		}
		if got := tenantOf(); got != "acme" {
			t.Fatalf("uid 4242 is in tenant %q before the reload, want acme", got)
		}
		path := filepath.Join(m.Dir, "tenants.yaml")
		if err := os.WriteFile(path, []byte("tenants:\n  globex:\n    users: [\"4242\"]\n    scopes: [tools:list]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(daemonPID(t, m.Env), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "uid 4242 moved to globex", func() bool { return tenantOf() == "globex" })
		// acme is no longer a tenant: its tokens are refused.
		if st, _, jerr := rawRPC(t, socketHTTP(m.Socket, ""), api.MCPEndpoint, m.tokens["acme"], "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); st != 401 || !strings.Contains(fmt.Sprint(jerr["message"]), "no longer in the tenants file") {
			t.Errorf("a token of a removed tenant: %d %v, want 401", st, jerr)
		}
		// A file that does not parse keeps the mapping loaded before.
		if err := os.WriteFile(path, []byte("tenants: [oops\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(daemonPID(t, m.Env), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitLog(t, m.Env, "tenants file reload failed", 10*time.Second)
		if got := tenantOf(); got != "globex" {
			t.Errorf("after a broken tenants file, uid 4242 is in tenant %q, want globex still", got)
		}
	})
}

// findEvent returns the newest event of the recent ones (as the admin
// sees them) that matches.
func (m *mcpEnv) findEvent(t *testing.T, admin *sdk.ClientSession, match func(map[string]any) bool) map[string]any {
	t.Helper()
	rr, err := admin.ReadResource(context.Background(), &sdk.ReadResourceParams{URI: "tcc://ledger/events"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []map[string]any
	if err := json.Unmarshal([]byte(rr.Contents[0].Text), &evs); err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if match(evs[i]) {
			return evs[i]
		}
	}
	return nil
}

// bridge runs `tccctl mcp` (as cred if set, with TCC_TOKEN=token if set),
// writes lines to its stdin, and returns its answers by id once answers
// to ids 1..n arrived, and at 0 every line that had no id; then it closes
// stdin and waits for a clean exit.
func (m *mcpEnv) bridge(t *testing.T, cred *syscall.Credential, token string, lines []string, n int) map[int]json.RawMessage {
	t.Helper()
	cmd := exec.Command(m.ctlPath(t, cred != nil), "mcp")
	cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket, "TCC_TOKEN="+token)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	answers := map[int]json.RawMessage{}
	var mu sync.Mutex // answers, read on timeout while the reader may run
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
		for sc.Scan() {
			var msg struct {
				ID *int `json:"id"`
			}
			mu.Lock()
			if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.ID != nil {
				answers[*msg.ID] = json.RawMessage(append([]byte(nil), sc.Bytes()...))
				_, other := answers[0]
				full := len(answers)-btoi(other) == n
				mu.Unlock()
				if full {
					return
				}
				continue
			}
			answers[0] = append(append(answers[0], sc.Bytes()...), '\n')
			mu.Unlock()
		}
	}()
	for _, l := range lines {
		if _, err := io.WriteString(stdin, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("tccctl mcp answered %d of %d requests in 30s; stderr:\n%s", len(answers), n, stderr.String())
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("tccctl mcp after stdin closed: %v; stderr:\n%s", err, stderr.String())
	}
	return answers
}

// ctlPath is tccctl's path; for another user, a copy it can execute (the
// build directory is private to root).
func (m *mcpEnv) ctlPath(t *testing.T, otherUser bool) string {
	t.Helper()
	src := filepath.Join(bin, "tccctl")
	if !otherUser {
		return src
	}
	dst := filepath.Join(m.Dir, "tccctl")
	if _, err := os.Stat(dst); err == nil {
		return dst
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// ctlAs runs tccctl as another user.
func (m *mcpEnv) ctlAs(t *testing.T, cred *syscall.Credential, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(m.ctlPath(t, true), args...)
	cmd.Env = append(append(os.Environ(), "TCC_SOCKET="+m.Socket), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
