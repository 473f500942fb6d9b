package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/trustcells/tcc/cells/manifest"
)

// Key layout (docs/notes/003-ledger.md). Integers are 8-byte big-endian so
// that byte order is numeric order.
//
//	meta/size                 number of events (uint64)
//	meta/checkpoint           signed checkpoint of the tree of meta/size events
//	e/<seq>                   event bytes = Merkle leaf
//	h/<index>                 tlog stored hash (32 bytes)
//	c/<size>                  a checkpoint kept: the tree of that size (Checkpoint)
//	t/<tenant>\x00<seq>       empty; events of a tenant
//	cell/<identity>           CellRecord (JSON)
//	l/<name>/<seq>            identity registered by event seq
//	r/<name>/<seq>            empty; rollback or revoke event that moved the head of name
//	head/<name>               identity of the current head
//	rev/<identity>            seq of the revoke event
//	o/<seq>                   empty; a call.begin no call.end or call.aborted closed yet
//	end/<seq>                 seq of the call.end or call.aborted that closed call.begin seq
//	x/...                     free for Mutations of other packages
var (
	keySize       = []byte("meta/size")
	keyCheckpoint = []byte("meta/checkpoint")
	pEvent        = []byte("e/")
	pHash         = []byte("h/")
	pCP           = []byte("c/")
	pTenant       = []byte("t/")
	pCell         = []byte("cell/")
	pLin          = []byte("l/")
	pMove         = []byte("r/")
	pHead         = []byte("head/")
	pRev          = []byte("rev/")
	pOpen         = []byte("o/")
	pEnd          = []byte("end/")
)

// PrefixExternal is where Mutations of other packages keep their state;
// every other key belongs to the ledger.
const PrefixExternal = "x/"

func external(key []byte) bool { return bytes.HasPrefix(key, []byte(PrefixExternal)) }

func u64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d-byte integer", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func seqKey(prefix []byte, n uint64) []byte {
	k := make([]byte, 0, len(prefix)+8)
	return binary.BigEndian.AppendUint64(append(k, prefix...), n)
}

func eventKey(seq uint64) []byte { return seqKey(pEvent, seq) }
func hashKey(i int64) []byte     { return seqKey(pHash, uint64(i)) }
func cpKey(size uint64) []byte   { return seqKey(pCP, size) }
func openKey(seq uint64) []byte  { return seqKey(pOpen, seq) }
func endKey(seq uint64) []byte   { return seqKey(pEnd, seq) }

func tenantPrefix(tenant string) []byte {
	return append(append(append([]byte(nil), pTenant...), tenant...), 0)
}

func tenantKey(tenant string, seq uint64) []byte { return seqKey(tenantPrefix(tenant), seq) }

func cellKey(id manifest.Identity) []byte { return append(append([]byte(nil), pCell...), id...) }
func headKey(name string) []byte          { return append(append([]byte(nil), pHead...), name...) }
func revKey(id manifest.Identity) []byte  { return append(append([]byte(nil), pRev...), id...) }

func linPrefix(name string) []byte {
	return append(append(append([]byte(nil), pLin...), name...), '/')
}
func linKey(name string, seq uint64) []byte { return seqKey(linPrefix(name), seq) }

func movePrefix(name string) []byte {
	return append(append(append([]byte(nil), pMove...), name...), '/')
}
func moveKey(name string, seq uint64) []byte { return seqKey(movePrefix(name), seq) }

// prefixEnd is the smallest key greater than every key with the prefix.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // all 0xff: no upper bound
}

// validName is the ledger's own guard on cell names (the manifest package
// owns the real rule): MCP tool-name characters, so names can never contain
// the '/' of the key layout or the ':' of an identity.
func validName(name string) error {
	if name == "" || len(name) > 128 || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
		return fmt.Errorf("%w: cell name %q: use 1 to 128 of A-Z a-z 0-9 . _ -", ErrInvalid, name)
	}
	return nil
}

const hashPrefix = "sha256:"

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func validDigest(what, s string) error {
	hex, ok := strings.CutPrefix(s, hashPrefix)
	if !ok || len(hex) != 64 || !isHex(hex) {
		return fmt.Errorf("%w: %s %q: want sha256: and 64 lower-case hex digits", ErrInvalid, what, s)
	}
	return nil
}

func validIdentity(id manifest.Identity) error { return validDigest("identity", string(id)) }
