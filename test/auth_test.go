package test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/internal/testutil"
	"github.com/trustcells/tcc/mcp"
)

// rawRPC posts one JSON-RPC body and returns the status, the
// WWW-Authenticate challenge and the JSON-RPC error (nil if none).
func rawRPC(t *testing.T, hc *http.Client, url, token, origin, body string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var msg struct {
		Error map[string]any `json:"error"`
	}
	_ = json.Unmarshal(b, &msg)
	if msg.Error == nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// An SSE answer: look for an error in its data lines.
		for _, l := range strings.Split(string(b), "\n") {
			if d, ok := strings.CutPrefix(l, "data: "); ok {
				_ = json.Unmarshal([]byte(d), &msg)
			}
		}
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), msg.Error
}

// tokenJTI reads a token's id without verifying it.
func tokenJTI(t *testing.T, tok string) string {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// resign re-signs tok's claims, changed by edit, with key.
func resign(t *testing.T, tok string, key ed25519.PrivateKey, edit func(jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// daemonTokenKey reads tccd's token signing key: the test plays an
// attacker who could re-sign claims (expiry, revoked ids) with it.
func daemonTokenKey(t *testing.T, m *mcpEnv) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.State, "keys", "tcc-token.key"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(m.State, "keys", "tcc-token.key"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token key mode %v, want 0600", fi.Mode().Perm())
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(ed25519.PrivateKey)
}

func testAuth(t *testing.T, m *mcpEnv) {
	sock := socketHTTP(m.Socket, "")
	tcp := http.DefaultClient
	key := daemonTokenKey(t, m)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	call := func(name string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{"text":"abc"}}}`
	}
	acme := m.tokens["acme"]

	tests := []struct {
		name           string
		hc             *http.Client
		url            string
		token, origin  string
		body           string
		status         int
		code           float64
		msg, challenge string
	}{
		{"not JSON", sock, api.MCPEndpoint, "", "", `{"jsonrpc": "2.0", "id": 1, "method": "ping"`, 400, -32700, "parse error", ""},
		{"not JSON-RPC", sock, api.MCPEndpoint, "", "", `{"id":1,"params":{}}`, 400, -32600, "not a JSON-RPC 2.0 message", ""},
		{"oversized", sock, api.MCPEndpoint, "", "", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5<<20) + `"}}`, 413, mcp.CodeTooLarge, "larger than 4194304 bytes (4 MiB)", ""},
		{"foreign Origin", sock, api.MCPEndpoint, "", "https://evil.example.com", ping, 403, mcp.CodeForbidden, "is not local", ""},
		{"foreign Host over TCP", tcp, m.tcpURL, acme, "", ping, -1, 0, "", ""},
		{"no token over TCP", tcp, m.tcpURL, "", "", ping, 401, mcp.CodeUnauthorized, "no bearer token", `error="invalid_request"`},
		{"garbage token", tcp, m.tcpURL, "not-a-token", "", ping, 401, mcp.CodeUnauthorized, "not a JWT", `error="invalid_token"`},
		{"signed by a stranger", tcp, m.tcpURL, resign(t, acme, stranger, func(jwt.MapClaims) {}), "", ping, 401, mcp.CodeUnauthorized, "signature does not verify", `error="invalid_token"`},
		{"expired", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "", ping, 401, mcp.CodeUnauthorized, "expired at", `error="invalid_token"`},
		{"never issued", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["jti"] = uuid.Must(uuid.NewV7()).String() }), "", ping, 401, mcp.CodeUnauthorized, "not in this tccd's ledger", ""},
		{"tenant altered", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["tenant"] = "globex" }), "", ping, 401, mcp.CodeUnauthorized, "does not match its record", ""},
		{"valid token over TCP", tcp, m.tcpURL, acme, "", list, 200, 0, "", ""},
		{"valid token over the socket", sock, api.MCPEndpoint, acme, "http://localhost:6274", list, 200, 0, "", ""},
		{"missing scope", tcp, m.tcpURL, m.tokens["list"], "", call("sha256"), 403, mcp.CodeForbidden, "needs scope tools:call", `error="insufficient_scope", scope="tools:call"`},
		{"actuate without cells:actuate", tcp, m.tcpURL, acme, "", call("sha256-actuate"), 403, mcp.CodeForbidden, "actuate-phase", `scope="cells:actuate"`},
		{"another tenant's vault", tcp, m.tcpURL, acme, "", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"vault://globex/secret.md"}}`, 403, mcp.CodeForbidden, "belongs to tenant globex", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.status == -1 {
				// DNS rebinding: a Host that is not loopback, sent to the
				// loopback listener, is refused by the SDK's protection.
				req, _ := http.NewRequest(http.MethodPost, m.tcpURL, strings.NewReader(tt.body))
				req.Host = "evil.example.com"
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer "+tt.token)
				resp, err := tcp.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("Host evil.example.com: status %d, want 403", resp.StatusCode)
				}
				return
			}
			status, challenge, jerr := rawRPC(t, tt.hc, tt.url, tt.token, tt.origin, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d (error %v)", status, tt.status, jerr)
			}
			if tt.code == 0 {
				if jerr != nil {
					t.Errorf("unexpected error %v", jerr)
				}
				return
			}
			if jerr == nil || jerr["code"] != tt.code || !strings.Contains(fmt.Sprint(jerr["message"]), tt.msg) {
				t.Errorf("error %v, want code %v with %q", jerr, tt.code, tt.msg)
			}
			if !strings.Contains(challenge, tt.challenge) {
				t.Errorf("WWW-Authenticate %q, want %q in it", challenge, tt.challenge)
			}
			if tt.status == 401 && !strings.HasPrefix(challenge, `Bearer realm="tccd"`) {
				t.Errorf("401 without a Bearer challenge: %q", challenge)
			}
		})
	}

	t.Run("revocation", func(t *testing.T) {
		out, _, code := m.CtlSplit(nil, "token", "issue", "--tenant", "acme", "--scope", "tools:list", "--json")
		var issued api.IssuedToken
		if code != 0 || json.Unmarshal([]byte(out), &issued) != nil {
			t.Fatalf("token issue: %s", out)
		}
		if st, _, _ := rawRPC(t, tcp, m.tcpURL, issued.Token, "", list); st != 200 {
			t.Fatalf("fresh token: status %d", st)
		}
		// An SDK session made with the token, to see it refused mid-session,
		// and a legacy one whose notification stream must end at once.
		cs := m.session(t, issued.Token, nil)
		legacy := m.sessionAt(t, issued.Token, nil, "2025-11-25")
		ended := make(chan error, 1)
		go func() { ended <- legacy.Wait() }()
		m.MustCtl("token", "revoke", issued.JTI)
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Error("the notification stream of a revoked token's session is still open 10s after the revocation")
		}
		st, _, jerr := rawRPC(t, tcp, m.tcpURL, issued.Token, "", list)
		if st != 401 || !strings.Contains(fmt.Sprint(jerr["message"]), "was revoked") {
			t.Errorf("revoked token: %d %v", st, jerr)
		}
		// Replaying the revoked id in a token re-signed with a fresh expiry.
		replay := resign(t, issued.Token, key, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() })
		if st, _, jerr := rawRPC(t, tcp, m.tcpURL, replay, "", list); st != 401 || !strings.Contains(fmt.Sprint(jerr["message"]), "was revoked") {
			t.Errorf("replayed revoked jti: %d %v", st, jerr)
		}
		if _, err := cs.ListTools(context.Background(), nil); err == nil {
			t.Error("a session of a revoked token still lists tools")
		}
		var infos []api.TokenInfo
		if err := json.Unmarshal([]byte(m.MustCtl("token", "list", "--json")), &infos); err != nil {
			t.Fatal(err)
		}
		status := map[string]string{}
		for _, ti := range infos {
			status[ti.JTI] = ti.Status
		}
		if status[issued.JTI] != "revoked" || status[tokenJTI(t, acme)] != "active" {
			t.Errorf("token list statuses %v", status)
		}
		admin := m.session(t, "", nil)
		for _, typ := range []string{"token.issue", "token.revoke"} {
			ev := m.findEvent(t, admin, func(ev map[string]any) bool {
				attrs, _ := ev["attrs"].(map[string]any)
				return ev["type"] == typ && attrs["jti"] == issued.JTI
			})
			if ev == nil || ev["tenant"] != "acme" {
				t.Errorf("no %s event for %s (got %v)", typ, issued.JTI, ev)
			}
		}
		if _, code := m.Ctl("token", "revoke", issued.JTI); code == 0 {
			t.Error("revoking twice succeeded")
		}
	})

	t.Run("control API with a bad token", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(bin, "tccctl"), "status")
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket, "TCC_TOKEN=not-a-token")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 || !strings.Contains(string(out), "not a JWT") {
			t.Errorf("tccctl status with a bad token: %v\n%s", err, out)
		}
		// The control API keeps tenants apart too: another tenant's cell is
		// not found.
		cmd = exec.Command(filepath.Join(bin, "tccctl"), "run", "json-query", "--input", `{}`)
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket, "TCC_TOKEN="+acme)
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "not found") {
			t.Errorf("acme running globex's cell over /v1/run: %v\n%s", err, out)
		}
		// A valid token narrows even root: no admin verbs.
		cmd = exec.Command(filepath.Join(bin, "tccctl"), "token", "list")
		cmd.Env = append(os.Environ(), "TCC_SOCKET="+m.Socket, "TCC_TOKEN="+acme)
		out, err = cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Errorf("token list with a tenant token: %v\n%s", err, out)
		}
	})

	t.Run("actuate for admins", func(t *testing.T) {
		r, err := m.session(t, "", nil).CallTool(context.Background(), &sdk.CallToolParams{Name: "sha256-actuate", Arguments: map[string]any{"text": "abc"}})
		if err != nil || r.IsError {
			t.Errorf("admin calling an actuate cell: %v %+v", err, r)
		}
	})
}

// TestListenTCPRefused: a non-loopback --listen-tcp stops tccd at start,
// before it creates anything, and says why.
func TestListenTCPRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, addr := range []string{"0.0.0.0:0", ":8765", "192.0.2.1:80"} {
		dir := t.TempDir()
		cmd := exec.Command(filepath.Join(bin, "tccd"), "--state-dir", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "s.sock"),
			"--cgroup-parent", "/tcc-test-refused", "--listen-tcp", addr)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "local-only by design") {
			t.Errorf("--listen-tcp %s: %v\n%s", addr, err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
			t.Errorf("--listen-tcp %s: the state dir was created before the refusal", addr)
		}
	}
}

// connectEnv makes the test binary a helper that connects its fd 3 to the
// socket the variable names and exits (connectedBy). init runs before
// TestMain, which would build the binaries.
const connectEnv = "TCC_TEST_CONNECT_FD3"

func init() {
	if sock := os.Getenv(connectEnv); sock != "" {
		if err := syscall.Connect(3, &syscall.SockaddrUnix{Name: sock}); err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// connectedBy returns a client on one connection to tccd's socket made by
// a process running as cred, which has exited by the time the client is
// used: its pid is nobody's, or anyone's.
func connectedBy(t *testing.T, m *mcpEnv, cred *syscall.Credential) *api.Client {
	t.Helper()
	exe := filepath.Join(m.Dir, "test-helper") // the build directory is private to root
	if err := os.WriteFile(exe, mustRead(t, os.Args[0]), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "tcc-test-conn")
	defer f.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{connectEnv + "=" + m.Socket}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connecting helper: %v\n%s", err, out)
	}
	conn, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var once sync.Once
	c := api.NewClient(m.Socket)
	c.HTTPClient().Transport = &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			var got net.Conn
			once.Do(func() { got = conn })
			if got == nil {
				return nil, errors.New("the helper's one connection is used up")
			}
			return got, nil
		},
	}
	return c
}

// testControl: the control API holds the same lines as MCP. Scopes are
// checked against the cell that runs (S1), another tenant's cell is
// indistinguishable from a missing one (S3), group membership is the
// kernel's record of the connecting process (S2), and a new version keeps
// its parent's tenant (S6).
func testControl(t *testing.T, m *mcpEnv) {
	ctx := context.Background()
	as := func(token string) *api.Client {
		c := m.Client()
		c.Token = token
		return c
	}
	acme, list := as(m.tokens["acme"]), as(m.tokens["list"])
	abc := json.RawMessage(`{"text":"abc"}`)

	t.Run("scopes of a call", func(t *testing.T) {
		before := ledgerSize(t, m.Env)
		_, err := list.Run(ctx, api.RunRequest{Cell: "sha256", Input: abc})
		wantAPIError(t, err, api.CodeForbidden, "needs scope tools:call")
		_, err = acme.Run(ctx, api.RunRequest{Cell: "sha256-actuate", Input: abc})
		wantAPIError(t, err, api.CodeForbidden, "needs scope cells:actuate")
		// uid 65534 is in no tenant, and the tenants file grants such
		// users nothing: tccctl exits 5.
		out, errOut, code := m.ctlAs(t, &syscall.Credential{Uid: 65534, Gid: 65534}, nil, "run", "sha256", "--input", string(abc))
		if code != 5 || !strings.Contains(errOut, "needs scope tools:call") {
			t.Errorf("run as nobody: exit %d, %s%s; want 5 and the missing scope", code, out, errOut)
		}
		if after := ledgerSize(t, m.Env); after != before {
			t.Errorf("refused calls appended %d events", after-before)
		}
		// A replay is a call: it needs the scope too.
		o, err := acme.Run(ctx, api.RunRequest{Cell: "sha256", Input: abc})
		if err != nil || !o.OK() {
			t.Fatalf("acme runs sha256: %v %+v", err, o)
		}
		_, err = list.LedgerReplay(ctx, o.EndSeq)
		wantAPIError(t, err, api.CodeForbidden, "needs scope tools:call")
	})

	t.Run("another tenant's cell is not found", func(t *testing.T) {
		errOf := func(ref string) []error {
			_, e1 := acme.Cell(ctx, ref)
			_, e2 := acme.Lineage(ctx, ref)
			_, e3 := acme.Syscalls(ctx, ref)
			_, _, e4 := acme.Profile(ctx, ref)
			_, e5 := acme.Run(ctx, api.RunRequest{Cell: ref, Input: json.RawMessage(`{}`)})
			return []error{e1, e2, e3, e4, e5}
		}
		hidden, missing := errOf("json-query"), errOf("no-such-cell")
		for i := range hidden {
			got := strings.ReplaceAll(fmt.Sprint(hidden[i]), "json-query", "NAME")
			want := strings.ReplaceAll(fmt.Sprint(missing[i]), "no-such-cell", "NAME")
			if !isCode(hidden[i], api.CodeNotFound) || got != want {
				t.Errorf("route %d: globex's cell answers %q, a missing one %q; want the same not_found", i, hidden[i], missing[i])
			}
		}
		id := headOf(t, m, "json-query")
		if _, err := acme.Cell(ctx, id[:len("sha256:")+8]); !isCode(err, api.CodeNotFound) {
			t.Errorf("globex's cell by prefix: %v, want not_found", err)
		}
		cells, err := acme.Cells(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cells {
			if c.Tenant != "" && c.Tenant != "acme" {
				t.Errorf("acme lists %s of tenant %s", c.Name, c.Tenant)
			}
		}
	})

	t.Run("groups come from the socket", func(t *testing.T) {
		// A member of the admin group connects and exits; the connection
		// stays. Reading /proc/<pid> now would find nothing (or whoever has
		// the pid since): the groups must be those the kernel recorded.
		c := connectedBy(t, m, &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{adminGID}})
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Caller.ID != "uid:65534" || !st.Caller.Admin {
			t.Errorf("caller %+v, want uid:65534 as an admin (member of gid %d when it connected)", st.Caller, adminGID)
		}
	})

	t.Run("a new version keeps its tenant", func(t *testing.T) {
		v1 := headOf(t, m, "json-query")
		v2 := m.Signed("cells/examples/json-query", version(2, v1))
		for _, tt := range []struct {
			tenant string
			code   api.Code
			msg    string
		}{
			{"Globex!", api.CodeBadRequest, "want a lower-case letter"},
			{"initech", api.CodeBadRequest, "not in the tenants file"},
			{"acme", api.CodeLineage, "belongs to tenant globex, not tenant acme"},
		} {
			_, err := m.Client().Register(ctx, mustOpen(t, v2), tt.tenant)
			wantAPIError(t, err, tt.code, tt.msg)
		}
		_, err := m.Client().IssueToken(ctx, api.TokenRequest{Tenant: "initech", Scopes: []string{"tools:list"}})
		wantAPIError(t, err, api.CodeBadRequest, "not in the tenants file")
		if _, err := m.Client().Register(ctx, mustOpen(t, v2), ""); err != nil {
			t.Fatal(err)
		}
		if c, err := m.Client().Cell(ctx, "json-query"); err != nil || c.Tenant != "globex" || c.Parent != v1 {
			t.Errorf("v2: %v %+v, want globex's, parent %s", err, c, v1)
		}
		// Prompts too.
		dir := filepath.Join(m.Dir, "prompt-audit-v2")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		y := string(mustRead(t, filepath.Join(m.Dir, "prompt-audit", "prompt.yaml")))
		y = strings.Replace(y, "list every gap.", "list every gap, worst first.", 1) + "parent: " + m.promptID + "\n"
		if err := os.WriteFile(filepath.Join(dir, "prompt.yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		m.MustCtl("prompt", "pack", dir, "-o", dir+".prompt")
		m.MustCtl("prompt", "sign", dir+".prompt", "--key", m.Key)
		m.MustCtl("prompt", "register", dir+".prompt")
		var p api.Prompt
		decodeJSON(t, m.MustCtl("prompt", "show", "audit-review", "--json"), &p)
		if p.Tenant != "acme" || p.Parent != m.promptID {
			t.Errorf("prompt v2: tenant %q parent %s, want acme's, parent %s", p.Tenant, p.Parent, m.promptID)
		}
	})
}

// headOf is the head identity of name, as an admin sees it.
func headOf(t *testing.T, m *mcpEnv, name string) string {
	t.Helper()
	c, err := m.Client().Cell(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return c.Identity
}
