package test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	sock := mcp.SocketClient(m.Socket, "")
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
		{"not JSON", sock, mcp.SocketEndpoint, "", "", `{"jsonrpc": "2.0", "id": 1, "method": "ping"`, 400, -32700, "parse error", ""},
		{"not JSON-RPC", sock, mcp.SocketEndpoint, "", "", `{"id":1,"params":{}}`, 400, -32600, "not a JSON-RPC 2.0 message", ""},
		{"oversized", sock, mcp.SocketEndpoint, "", "", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5<<20) + `"}}`, 413, mcp.CodeTooLarge, "larger than 4194304 bytes (4 MiB)", ""},
		{"foreign Origin", sock, mcp.SocketEndpoint, "", "https://evil.example.com", ping, 403, mcp.CodeForbidden, "is not local", ""},
		{"foreign Host over TCP", tcp, m.tcpURL, acme, "", ping, -1, 0, "", ""},
		{"no token over TCP", tcp, m.tcpURL, "", "", ping, 401, mcp.CodeUnauthorized, "no bearer token", `error="invalid_request"`},
		{"garbage token", tcp, m.tcpURL, "not-a-token", "", ping, 401, mcp.CodeUnauthorized, "not a JWT", `error="invalid_token"`},
		{"signed by a stranger", tcp, m.tcpURL, resign(t, acme, stranger, func(jwt.MapClaims) {}), "", ping, 401, mcp.CodeUnauthorized, "signature does not verify", `error="invalid_token"`},
		{"expired", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "", ping, 401, mcp.CodeUnauthorized, "expired at", `error="invalid_token"`},
		{"never issued", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["jti"] = uuid.Must(uuid.NewV7()).String() }), "", ping, 401, mcp.CodeUnauthorized, "not in this tccd's ledger", ""},
		{"tenant altered", tcp, m.tcpURL, resign(t, acme, key, func(c jwt.MapClaims) { c["tenant"] = "globex" }), "", ping, 401, mcp.CodeUnauthorized, "does not match its record", ""},
		{"valid token over TCP", tcp, m.tcpURL, acme, "", list, 200, 0, "", ""},
		{"valid token over the socket", sock, mcp.SocketEndpoint, acme, "http://localhost:6274", list, 200, 0, "", ""},
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
		// An SDK session made with the token, to see it refused mid-session.
		cs := m.session(t, issued.Token, nil)
		m.MustCtl("token", "revoke", issued.JTI)
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
