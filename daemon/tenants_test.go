package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadTenants(t *testing.T) {
	tests := []struct {
		name, file string
		err        string
	}{
		{"valid", `
tenants:
  acme: {users: ["4242"], groups: ["4300"], scopes: [tools:list, tools:call, cells:actuate]}
  globex: {users: ["4343"], scopes: [resources:read]}
default: {scopes: [tools:list]}
anonymous: {tenant: acme, scopes: [tools:list]}
`, ""},
		{"unknown field", "tenant: {}\n", "field tenant not found"},
		{"bad tenant name", "tenants: {Acme: {scopes: []}}\n", `tenant "Acme"`},
		{"unknown scope", "tenants: {acme: {scopes: [tools:everything]}}\n", `unknown scope "tools:everything"`},
		{"user twice", "tenants: {a: {users: ['7']}, b: {users: ['7']}}\n", "user 7 is in tenants a and b"},
		{"anonymous actuate", "anonymous: {tenant: a, scopes: [cells:actuate]}\n", "never granted"},
		{"default with tenant", "default: {tenant: a, scopes: [tools:list]}\n", "default.tenant"},
		{"no such user", "tenants: {a: {users: [no-such-user-tcc]}}\n", "no-such-user-tcc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "tenants.yaml")
			if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			ts, err := loadTenants(p)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("loadTenants = %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				uid, gid uint32
				groups   []uint32
				tenant   string
				scopes   []string
			}{
				{4242, 100, nil, "acme", []string{"tools:list", "tools:call", "cells:actuate"}},
				{1, 4300, nil, "acme", []string{"tools:list", "tools:call", "cells:actuate"}},
				{1, 1, []uint32{9, 4300}, "acme", []string{"tools:list", "tools:call", "cells:actuate"}},
				{4343, 4300, nil, "globex", []string{"resources:read"}}, // uid before gid
				{1, 1, nil, "", []string{"tools:list"}},                 // default
			} {
				tenant, scopes := ts.ofPeer(c.uid, c.gid, c.groups)
				if tenant != c.tenant || !slices.Equal(scopes, c.scopes) {
					t.Errorf("ofPeer(%d, %d, %v) = %q %v, want %q %v", c.uid, c.gid, c.groups, tenant, scopes, c.tenant, c.scopes)
				}
			}
			if ts.anon == nil || ts.anon.Tenant != "acme" {
				t.Errorf("anonymous = %+v", ts.anon)
			}
		})
	}
	// No file: local users get the default scopes, TCP needs a token.
	ts, err := loadTenants("")
	if err != nil {
		t.Fatal(err)
	}
	if tenant, scopes := ts.ofPeer(1000, 1000, nil); tenant != "" || !slices.Equal(scopes, defaultScopes) || ts.anon != nil {
		t.Errorf("no file: %q %v anon %v", tenant, scopes, ts.anon)
	}
}

func TestCheckListenTCP(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:8765": true, "127.3.2.1:0": true, "[::1]:9": true, "localhost:80": true,
		"0.0.0.0:8765": false, ":8765": false, "192.168.1.5:80": false, "[::]:80": false, "example.com:80": false, "127.0.0.1": false,
	} {
		err := CheckListenTCP(addr)
		if (err == nil) != ok {
			t.Errorf("CheckListenTCP(%q) = %v, want ok=%v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--listen-tcp") {
			t.Errorf("CheckListenTCP(%q) error %q does not name the flag", addr, err)
		}
	}
	if err := CheckListenTCP("0.0.0.0:1"); !strings.Contains(err.Error(), "local-only by design") {
		t.Errorf("error %q does not say why", err)
	}
}

func TestVaultPaths(t *testing.T) {
	for p, ok := range map[string]bool{
		"policies/iso27001.md": true, "a": true, "a/b/c.tar.gz": true,
		"": false, "/abs": false, "a//b": false, "../x": false, "a/./b": false, "a b": false, strings.Repeat("a", 600): false,
	} {
		if err := checkVaultPath(p); (err == nil) != ok {
			t.Errorf("checkVaultPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
	for uri, ok := range map[string]bool{"test://static-text": true, "https://policies.example.com/a.pdf": true, "vault://acme/x": false, "tcc://cells/x": false, "relative/path": false} {
		if err := checkAlias(uri); (err == nil) != ok {
			t.Errorf("checkAlias(%q) = %v, want ok=%v", uri, err, ok)
		}
	}
}
