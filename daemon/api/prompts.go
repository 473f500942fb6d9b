package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"
)

// PromptSummary is one line of `tccctl prompt list`: a name and its head.
type PromptSummary struct {
	Name         string    `json:"name"`
	Head         string    `json:"head"`
	Title        string    `json:"title,omitempty"`
	Description  string    `json:"description"`
	Arguments    int       `json:"arguments"`
	Versions     int       `json:"versions"`
	Tenant       string    `json:"tenant,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
}

// Prompt is a registered prompt identity and its name's lineage.
type Prompt struct {
	Identity     string          `json:"identity"`
	Name         string          `json:"name"`
	Parent       string          `json:"parent,omitempty"`
	Signers      []string        `json:"signers"`
	Tenant       string          `json:"tenant,omitempty"`
	Head         bool            `json:"head"`
	Seq          uint64          `json:"seq"`
	RegisteredAt time.Time       `json:"registered_at"`
	Prompt       json.RawMessage `json:"prompt"` // canonical
	Lineage      []LineageEntry  `json:"lineage"`
}

// RegisterPrompt uploads a signed .prompt tar (admin) with a tenancy, as
// RegisterAs does for cells.
func (c *Client) RegisterPrompt(ctx context.Context, tarball io.Reader, t Tenancy) (*Registered, error) {
	var out Registered
	return &out, c.Do(ctx, http.MethodPost, "/v1/prompts"+t.query(), tarball, "application/x-tar", &out)
}

// Prompts lists every prompt name the caller may see, with its head.
func (c *Client) Prompts(ctx context.Context) ([]PromptSummary, error) {
	var out []PromptSummary
	return out, c.getJSON(ctx, "/v1/prompts", &out)
}

// Prompt resolves a name (its head) or an identity.
func (c *Client) Prompt(ctx context.Context, ref string) (*Prompt, error) {
	var out Prompt
	return &out, c.getJSON(ctx, "/v1/prompts/"+url.PathEscape(ref), &out)
}
