package daemon

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/trustcells/tcc/mcp"
)

// tenantRE is a tenant name: it appears in vault URIs (vault://TENANT/…).
var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func checkTenant(t string) error {
	if !tenantRE.MatchString(t) {
		return fmt.Errorf("tenant %q: want a lower-case letter or digit, then up to 63 of a-z 0-9 _ -", t)
	}
	return nil
}

// defaultScopes are what a local user holds when tccd runs without a
// tenants file: everything but actuate, on what is shared with every
// tenant (the same reach /v1/run gives any local user).
var defaultScopes = []string{mcp.ScopeToolsList, mcp.ScopeToolsCall, mcp.ScopeResourcesRead, mcp.ScopePromptsGet}

// tenantsFile is the --tenants file:
//
//	tenants:
//	  acme:
//	    users: [alice, 1001]      # user names or uids
//	    groups: [acme-ops]        # group names or gids
//	    scopes: [tools:list, tools:call, resources:read, prompts:get]
//	default:                      # local users in no tenant (omit: none)
//	  scopes: [tools:list]
//	anonymous:                    # loopback TCP clients without a token (omit: refused)
//	  tenant: acme
//	  scopes: [tools:list]
type tenantsFile struct {
	Tenants   map[string]tenantEntry `yaml:"tenants"`
	Default   *grant                 `yaml:"default"`
	Anonymous *grant                 `yaml:"anonymous"`
}

type tenantEntry struct {
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
	Scopes []string `yaml:"scopes"`
}

type grant struct {
	Tenant string   `yaml:"tenant"`
	Scopes []string `yaml:"scopes"`
}

// tenants is the parsed file: who is in which tenant with which scopes.
type tenants struct {
	byUID    map[uint32]string
	byGID    map[uint32]string
	scopes   map[string][]string
	unknown  *grant // local users in no tenant; nil = no scopes
	anon     *grant // anonymous loopback TCP; nil = refused
	fromFile bool   // read from a tenants file (names)
}

// loadTenants reads the tenants file; "" means no file: every local user
// gets defaultScopes and no tenant, and TCP clients need a token.
func loadTenants(path string) (*tenants, error) {
	t := &tenants{byUID: map[uint32]string{}, byGID: map[uint32]string{}, scopes: map[string][]string{}}
	if path == "" {
		t.unknown = &grant{Scopes: defaultScopes}
		return t, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	var f tenantsFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("tenants file %s: %s", path, fmt.Sprintf(format, args...))
	}
	for _, name := range slices.Sorted(maps.Keys(f.Tenants)) {
		e := f.Tenants[name]
		if err := checkTenant(name); err != nil {
			return nil, bad("%v", err)
		}
		if err := mcp.CheckScopes(e.Scopes); err != nil {
			return nil, bad("tenants.%s.scopes: %v", name, err)
		}
		t.scopes[name] = e.Scopes
		for _, u := range e.Users {
			uid, err := lookupID(u, true)
			if err != nil {
				return nil, bad("tenants.%s.users: %v", name, err)
			}
			if other, dup := t.byUID[uid]; dup {
				return nil, bad("user %s is in tenants %s and %s; a user belongs to one tenant", u, other, name)
			}
			t.byUID[uid] = name
		}
		for _, g := range e.Groups {
			gid, err := lookupID(g, false)
			if err != nil {
				return nil, bad("tenants.%s.groups: %v", name, err)
			}
			if other, dup := t.byGID[gid]; dup {
				return nil, bad("group %s is in tenants %s and %s; a group belongs to one tenant", g, other, name)
			}
			t.byGID[gid] = name
		}
	}
	for what, g := range map[string]*grant{"default": f.Default, "anonymous": f.Anonymous} {
		if g == nil {
			continue
		}
		if err := mcp.CheckScopes(g.Scopes); err != nil {
			return nil, bad("%s.scopes: %v", what, err)
		}
		if slices.Contains(g.Scopes, mcp.ScopeActuate) {
			return nil, bad("%s.scopes: %s is never granted to callers nobody vouched for", what, mcp.ScopeActuate)
		}
		if what == "default" && g.Tenant != "" {
			return nil, bad("default.tenant: local users in no tenant have no tenant; add them to one under tenants")
		}
		if g.Tenant != "" {
			if err := checkTenant(g.Tenant); err != nil {
				return nil, bad("%s.tenant: %v", what, err)
			}
		}
	}
	t.unknown, t.anon, t.fromFile = f.Default, f.Anonymous, true
	return t, nil
}

// lookupID resolves a user or group name, or takes a number as is.
func lookupID(s string, isUser bool) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	var id string
	if isUser {
		u, err := user.Lookup(s)
		if err != nil {
			return 0, err
		}
		id = u.Uid
	} else {
		g, err := user.LookupGroup(s)
		if err != nil {
			return 0, err
		}
		id = g.Gid
	}
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q has the non-numeric id %q in the system's user database; give the number instead", map[bool]string{true: "user", false: "group"}[isUser], s, id)
	}
	return uint32(n), nil
}

// ofPeer is the tenant and scopes of a local, non-admin user: by uid, then
// primary gid, then supplementary groups (in gid order).
func (t *tenants) ofPeer(uid, gid uint32, groups []uint32) (string, []string) {
	if name, ok := t.byUID[uid]; ok {
		return name, t.scopes[name]
	}
	if name, ok := t.byGID[gid]; ok {
		return name, t.scopes[name]
	}
	slices.Sort(groups)
	for _, g := range groups {
		if name, ok := t.byGID[g]; ok {
			return name, t.scopes[name]
		}
	}
	if t.unknown != nil {
		return "", t.unknown.Scopes
	}
	return "", nil
}

// reloadTenants re-reads the tenants file while the daemon runs; the next
// request is attributed with it. A file that does not parse keeps the
// mapping loaded before.
func (d *Daemon) reloadTenants() {
	if d.cfg.Tenants == "" {
		return
	}
	ts, err := loadTenants(d.cfg.Tenants)
	if err != nil {
		d.log.Error("tenants file reload failed; keeping the tenants loaded before", "tenants", d.cfg.Tenants, logErr, err)
		return
	}
	d.tenants.Store(ts)
	// Tokens of a tenant no longer in the file are refused from now on
	// (verifyToken); MCP streams and sessions of callers the file may have
	// changed end now, so that they come back under the new mapping.
	if d.mcp != nil {
		d.mcp.Disconnect(func(c *mcp.Caller) bool {
			return !c.Admin && (!strings.HasPrefix(c.ID, tokenCallerPrefix) || !ts.names(c.Tenant))
		})
	}
	d.log.Info("tenants file reloaded", "tenants", d.cfg.Tenants)
}

// knownTenant checks a tenant named by an admin (register, vault put,
// token issue): well formed and, with a tenants file, named in it (under
// tenants or as anonymous.tenant), so that a typo is refused instead of
// making something nobody can see. Without a tenants file every well
// formed name is a tenant: its callers are known only by tokens.
func (d *Daemon) knownTenant(t string) error {
	if err := checkTenant(t); err != nil {
		return err
	}
	if ts := d.tenants.Load(); !ts.names(t) {
		return fmt.Errorf("tenant %q is not in the tenants file %s; add it there (then send tccd SIGHUP)", t, d.cfg.Tenants)
	}
	return nil
}

// names reports whether t is a tenant of the file (true for every name
// when tccd runs without one).
func (t *tenants) names(name string) bool {
	if !t.fromFile {
		return true
	}
	_, ok := t.scopes[name]
	return ok || t.anon != nil && t.anon.Tenant == name
}
