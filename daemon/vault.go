package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
)

// The vault holds tenants' documents (policies, regulations, evidence),
// served to MCP clients as vault://TENANT/PATH resources. Content lives in
// the content-addressed object store; the index is in the ledger:
//
//	x/vault/doc/<tenant>/<path>   vaultRecord (JSON)
//	x/vault/alias/<uri>           "<tenant>/<path>" of the document published under uri
//
// A put is a vault.put event written in the same batch as its index
// entries; every read through MCP is a vault.read event, durable before
// the content is returned.
const (
	vaultDocPrefix   = ledger.PrefixExternal + "vault/doc/"
	vaultAliasPrefix = ledger.PrefixExternal + "vault/alias/"
	maxVaultDocument = 16 << 20
	maxVaultPath     = 512
)

var vaultSegmentRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

type vaultRecord struct {
	Tenant    string `json:"tenant"`
	Path      string `json:"path"`
	Alias     string `json:"alias,omitempty"`
	MIME      string `json:"mime"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	UpdatedNS int64  `json:"updated_ns"`
	By        string `json:"by"`
	Seq       uint64 `json:"seq"`
}

func (v *vaultRecord) api() api.Document {
	return api.Document{Tenant: v.Tenant, Path: v.Path, URI: "vault://" + v.Tenant + "/" + v.Path, Alias: v.Alias, MIME: v.MIME,
		SHA256: v.Digest, Size: v.Size, Updated: nsTime(v.UpdatedNS), By: v.By, Seq: v.Seq}
}

func (v *vaultRecord) mcp() mcp.Document {
	return mcp.Document{Tenant: v.Tenant, Path: v.Path, Alias: v.Alias, MIME: v.MIME, Digest: v.Digest, Size: v.Size, Updated: nsTime(v.UpdatedNS)}
}

func vaultDocKey(tenant, p string) []byte { return []byte(vaultDocPrefix + tenant + "/" + p) }

// checkVaultPath accepts a clean relative path of plain segments.
func checkVaultPath(p string) error {
	if p == "" || len(p) > maxVaultPath {
		return fmt.Errorf("vault path %q: want 1 to %d bytes", p, maxVaultPath)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." || !vaultSegmentRE.MatchString(seg) {
			return fmt.Errorf("vault path %q: segment %q: want letters, digits, '.', '_' and '-' (no empty, '.' or '..' segments)", p, seg)
		}
	}
	return nil
}

// checkAlias accepts an absolute URI of a scheme TCC does not own.
func checkAlias(uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || len(uri) > maxVaultPath {
		return fmt.Errorf("alias %q: want an absolute URI (scheme://…) of at most %d bytes", uri, maxVaultPath)
	}
	if u.Scheme == "vault" || u.Scheme == "tcc" {
		return fmt.Errorf("alias %q: the %s:// scheme is TCC's own; publish under another scheme", uri, u.Scheme)
	}
	return nil
}

// knownTypes are MIME types the Go standard library may not know on a
// minimal system (no /etc/mime.types).
var knownTypes = map[string]string{
	".md": "text/markdown; charset=utf-8", ".markdown": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8",
	".json": "application/json", ".yaml": "application/yaml", ".yml": "application/yaml", ".csv": "text/csv; charset=utf-8",
	".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".svg": "image/svg+xml", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".html": "text/html; charset=utf-8", ".xml": "application/xml",
}

// detectMIME guesses a type from the path's extension, then the content.
func detectMIME(p string, content []byte) string {
	ext := strings.ToLower(path.Ext(p))
	if t, ok := knownTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return http.DetectContentType(content)
}

func (d *Daemon) vaultPut(w http.ResponseWriter, r *http.Request, c caller) error {
	tenant, p := r.PathValue("tenant"), r.PathValue("path")
	if err := d.knownTenant(tenant); err != nil { // tenants.go
		return badRequest("vault put: %v", err)
	}
	if err := checkVaultPath(p); err != nil {
		return badRequest("vault put: %v", err)
	}
	mt, alias := r.URL.Query().Get("mime"), r.URL.Query().Get("uri")
	if mt != "" {
		if _, _, err := mime.ParseMediaType(mt); err != nil {
			return badRequest("vault put: --mime %q: %v", mt, err)
		}
	}
	if alias != "" {
		if err := checkAlias(alias); err != nil {
			return badRequest("vault put: %v", err)
		}
	}
	content, err := readBody(w, r, maxVaultDocument, func() error {
		return tooLarge("vault put: document larger than %d bytes (16 MiB), the vault's cap", maxVaultDocument)
	})
	if err != nil {
		return err
	}
	if mt == "" {
		mt = detectMIME(p, content)
	}
	digest, size, err := d.ledger.PutObject(bytes.NewReader(content))
	if err != nil {
		return err
	}
	rec := vaultRecord{Tenant: tenant, Path: p, Alias: alias, MIME: mt, Digest: string(digest), Size: size, By: c.ID}
	var oldAlias string
	ev := &ledger.Event{Type: ledger.TypeVaultPut, TraceID: ledger.NewTraceID(), Tenant: tenant, Caller: c.ID,
		Attrs: map[string]string{"path": p, "sha256": rec.Digest, "mime": mt, "size": fmt.Sprint(size), "uri": "vault://" + tenant + "/" + p}}
	if alias != "" {
		ev.Attrs["alias"] = alias
	}
	seq, err := d.ledger.Append(r.Context(), ev, func(tx *ledger.Txn) error {
		self := tenant + "/" + p
		if alias != "" {
			if owner, err := tx.Get([]byte(vaultAliasPrefix + alias)); err == nil && string(owner) != self {
				return fmt.Errorf("vault put: alias %s already names vault://%s: %w", alias, owner, ledger.ErrExists)
			}
		}
		if b, err := tx.Get(vaultDocKey(tenant, p)); err == nil {
			var old vaultRecord
			if json.Unmarshal(b, &old) == nil && old.Alias != "" && old.Alias != alias {
				oldAlias = old.Alias
				if err := tx.Delete([]byte(vaultAliasPrefix + old.Alias)); err != nil {
					return err
				}
			}
		}
		rec.Seq, rec.UpdatedNS = tx.Event().Seq, tx.Event().TimeNS
		b, _ := json.Marshal(rec)
		if err := tx.Set(vaultDocKey(tenant, p), b); err != nil {
			return err
		}
		if alias != "" {
			return tx.Set([]byte(vaultAliasPrefix+alias), []byte(self))
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.log.Info("vault put", logTenant, tenant, logPath, p, "sha256", rec.Digest, "mime", mt, "size", size, "alias", alias, logCaller, c.ID, logSeq, seq)
	if d.mcp != nil {
		doc := rec.mcp()
		d.mcp.DocumentChanged(context.WithoutCancel(r.Context()), &doc, oldAlias)
	}
	writeJSON(w, http.StatusCreated, rec.api())
	return nil
}

func (d *Daemon) vaultList(w http.ResponseWriter, r *http.Request, c caller) error {
	tenant := r.URL.Query().Get("tenant")
	if !c.Admin {
		if !c.Has(mcp.ScopeResourcesRead) {
			return forbidden("listing the vault needs scope %s; %s does not hold it", mcp.ScopeResourcesRead, c.ID)
		}
		if tenant != "" && tenant != c.Tenant || c.Tenant == "" {
			return forbidden("%s may list only its own tenant's vault", c.ID)
		}
		tenant = c.Tenant
	}
	recs, err := d.vaultRecords(tenant)
	if err != nil {
		return err
	}
	out := make([]api.Document, 0, len(recs))
	for _, v := range recs {
		out = append(out, v.api())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// vaultRecords lists documents of tenant, or of every tenant ("").
func (d *Daemon) vaultRecords(tenant string) ([]vaultRecord, error) {
	prefix := vaultDocPrefix
	if tenant != "" {
		prefix += tenant + "/"
	}
	var out []vaultRecord
	err := d.ledger.Scan([]byte(prefix), func(_, v []byte) error {
		var rec vaultRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("%w: vault record: %v", ledger.ErrCorrupt, err)
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// mcpVault is the vault as the MCP endpoint sees it.
type mcpVault struct{ d *Daemon }

func (v mcpVault) Documents(context.Context) ([]mcp.Document, error) {
	recs, err := v.d.vaultRecords("")
	if err != nil {
		return nil, err
	}
	out := make([]mcp.Document, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.mcp())
	}
	return out, nil
}

func (v mcpVault) Lookup(_ context.Context, uri string) (*mcp.Document, error) {
	key := []byte(nil)
	if rest, ok := strings.CutPrefix(uri, "vault://"); ok {
		key = []byte(vaultDocPrefix + rest)
	} else {
		owner, err := v.d.ledger.Get([]byte(vaultAliasPrefix + uri))
		if errors.Is(err, ledger.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", uri, mcp.ErrNotFound)
		} else if err != nil {
			return nil, err
		}
		key = []byte(vaultDocPrefix + string(owner))
	}
	b, err := v.d.ledger.Get(key)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", uri, mcp.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	var rec vaultRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: vault record: %v", ledger.ErrCorrupt, err)
	}
	doc := rec.mcp()
	return &doc, nil
}

// Read returns a document's content, re-hashed against its digest, after
// recording the read (vault.read: tenant, caller, path, digest).
func (v mcpVault) Read(ctx context.Context, c *mcp.Caller, doc *mcp.Document) ([]byte, error) {
	if !v.d.work.enter() { // serve.go: no vault.read after daemon.stop
		return nil, errStopping
	}
	defer v.d.work.leave()
	p, err := v.d.ledger.ObjectPath(manifest.Digest(doc.Digest))
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", doc.URI(), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxVaultDocument+1))
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", doc.URI(), err)
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != doc.Digest {
		v.d.log.Error("vault document does not match its digest: refusing to serve it", "uri", doc.URI(), "want", doc.Digest, "got", got)
		return nil, fmt.Errorf("vault %s: %w: content is %s, the ledger says %s", doc.URI(), ledger.ErrObjectCorrupt, got, doc.Digest)
	}
	ev := &ledger.Event{Type: ledger.TypeVaultRead, TraceID: ledger.NewTraceID(), Tenant: doc.Tenant, Caller: c.ID,
		Attrs: map[string]string{"path": doc.Path, "sha256": doc.Digest, "uri": doc.URI()}}
	if _, err := v.d.ledger.Append(context.WithoutCancel(ctx), ev); err != nil {
		return nil, fmt.Errorf("record vault read: %w", err)
	}
	return data, nil
}
