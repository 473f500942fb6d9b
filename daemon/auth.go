package daemon

import (
	"net/http"
	"slices"

	"github.com/trustcells/tcc/kernel/peer"
)

// caller is who sent a request, as far as the daemon can prove it.
type caller struct {
	ID     string // "uid:1000", or "jti:…" for a token
	UID    uint32
	Peer   bool // UID comes from SO_PEERCRED
	Admin  bool
	Tenant string   // "" = no tenant (admins see every tenant)
	Scopes []string // what the caller may do over MCP
}

func (d *Daemon) callerOf(r *http.Request) caller {
	cred, ok := peerOf(r.Context())
	if !ok {
		return caller{ID: "anonymous"}
	}
	c := caller{ID: cred.String(), UID: cred.UID, Peer: true}
	c.Admin = cred.UID == 0 || (d.adminGID >= 0 && d.inGroup(cred, uint32(d.adminGID)))
	return c
}

func (d *Daemon) inGroup(cred peer.Cred, gid uint32) bool {
	if cred.GID == gid {
		return true
	}
	groups, err := peer.Groups(cred)
	if err != nil {
		return false
	}
	return slices.Contains(groups, gid)
}
