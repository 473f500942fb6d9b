package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Document is a vault document's record.
type Document struct {
	Tenant  string    `json:"tenant"`
	Path    string    `json:"path"`
	URI     string    `json:"uri"`             // vault://TENANT/PATH
	Alias   string    `json:"alias,omitempty"` // another URI it is published under
	MIME    string    `json:"mime"`
	SHA256  string    `json:"sha256"` // sha256:<hex>
	Size    int64     `json:"size"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
	Seq     uint64    `json:"seq"` // the vault.put event
}

// VaultPut stores content as the document PATH of TENANT (admin). mime ""
// lets tccd detect the type; alias "" publishes it under its vault URI only.
func (c *Client) VaultPut(ctx context.Context, tenant, path string, content io.Reader, mime, alias string) (*Document, error) {
	q := url.Values{}
	if mime != "" {
		q.Set("mime", mime)
	}
	if alias != "" {
		q.Set("uri", alias)
	}
	p := "/v1/vault/" + url.PathEscape(tenant) + "/" + escapePath(path)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out Document
	return &out, c.Do(ctx, http.MethodPost, p, content, "application/octet-stream", &out)
}

// Vault lists documents: of tenant, or every one the caller may see ("").
func (c *Client) Vault(ctx context.Context, tenant string) ([]Document, error) {
	p := "/v1/vault"
	if tenant != "" {
		p += "?tenant=" + url.QueryEscape(tenant)
	}
	var out []Document
	return out, c.getJSON(ctx, p, &out)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
