package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Resource URIs.
const (
	uriCells       = "tcc://cells/"
	uriCheckpoint  = "tcc://ledger/checkpoint"
	uriEvents      = "tcc://ledger/events"
	tmplCell       = "tcc://cells/{name}"
	tmplLineage    = "tcc://cells/{name}/lineage"
	tmplEvent      = "tcc://ledger/events/{seq}"
	tmplVault      = "vault://{tenant}/{+path}"
	recentEvents   = 50
	jsonMIME       = "application/json"
	checkpointMIME = "text/plain; charset=utf-8"
)

func cellURI(name string) string { return uriCells + name }

func (s *Server) addStaticResources() {
	s.sdk.AddResource(&sdk.Resource{URI: uriCheckpoint, Name: "ledger checkpoint", Title: "Latest ledger checkpoint",
		Description: "The latest signed checkpoint (C2SP signed note) of the audit log's Merkle tree", MIMEType: checkpointMIME}, s.readResource)
	s.sdk.AddResource(&sdk.Resource{URI: uriEvents, Name: "recent events", Title: "Recent audit events",
		Description: fmt.Sprintf("Up to %d of the newest audit events you may see (your tenant's), as a JSON array", recentEvents), MIMEType: jsonMIME}, s.readResource)
	s.resources[uriCheckpoint] = ""
	s.resources[uriEvents] = ""
	for _, t := range []*sdk.ResourceTemplate{
		{URITemplate: tmplCell, Name: "cell", Title: "Cell contract", Description: "The signed manifest of the head of a cell name", MIMEType: jsonMIME},
		{URITemplate: tmplLineage, Name: "cell lineage", Title: "Cell lineage", Description: "The history of a cell name: identities, parents, head moves", MIMEType: jsonMIME},
		{URITemplate: tmplEvent, Name: "ledger event", Title: "Audit event", Description: "One audit event by sequence number, as stored (its Merkle leaf)", MIMEType: jsonMIME},
		{URITemplate: tmplVault, Name: "vault document", Title: "Vault document", Description: "A tenant's document (policy, regulation, evidence); every read is recorded in the ledger"},
	} {
		s.sdk.AddResourceTemplate(t, s.readResource)
	}
}

// setDocument publishes a vault document under its vault URI and alias.
func (s *Server) setDocument(d *Document) {
	uris := []string{d.URI()}
	if d.Alias != "" {
		uris = append(uris, d.Alias)
	}
	for _, uri := range uris {
		r := &sdk.Resource{URI: uri, Name: d.Path, Title: d.Path, MIMEType: d.MIME, Size: d.Size,
			Description: fmt.Sprintf("Vault document %s of tenant %s (%s); reads are recorded", d.Path, d.Tenant, d.Digest),
			Meta:        sdk.Meta{"tcc/sha256": d.Digest, "tcc/vault": d.URI()}}
		if err := addResource(s.sdk, r, s.readResource); err != nil {
			s.log.Warn("mcp: vault document not offered as a resource", "uri", uri, logErr, err)
			continue
		}
		s.mu.Lock()
		s.resources[uri] = d.Tenant
		s.mu.Unlock()
	}
}

func addResource(srv *sdk.Server, r *sdk.Resource, h sdk.ResourceHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	srv.AddResource(r, h)
	return nil
}

// readResource serves every resource and template.
func (s *Server) readResource(ctx context.Context, req *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
	c := callerOf(req)
	rc, err := s.read(ctx, c, req.Params.URI)
	var nf resourceNotFound
	if errors.As(err, &nf) {
		return nil, sdk.ResourceNotFoundError(string(nf))
	} else if err != nil {
		return nil, err
	}
	return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{rc}}, nil
}

// resourceNotFound is read's "no such resource (for this caller)".
type resourceNotFound string

func (r resourceNotFound) Error() string { return "resource " + string(r) + " not found" }

// read resolves uri for c. A resource c may not see is "not found", never
// "forbidden", so that its existence does not leak (the guard has already
// refused a vault URI that names another tenant).
func (s *Server) read(ctx context.Context, c *Caller, uri string) (*sdk.ResourceContents, error) {
	if !c.Has(ScopeResourcesRead) {
		return nil, forbidden("reading %s needs scope %s", uri, ScopeResourcesRead)
	}
	notFound := resourceNotFound(uri)
	switch {
	case uri == uriCheckpoint:
		return &sdk.ResourceContents{URI: uri, MIMEType: checkpointMIME, Text: string(s.opts.Audit.Checkpoint())}, nil
	case uri == uriEvents:
		evs, err := s.opts.Audit.Recent(ctx, c, recentEvents)
		if err != nil {
			return nil, s.internal(err)
		}
		if evs == nil {
			evs = []json.RawMessage{}
		}
		b, _ := json.MarshalIndent(evs, "", "  ")
		return &sdk.ResourceContents{URI: uri, MIMEType: jsonMIME, Text: string(b)}, nil
	case strings.HasPrefix(uri, uriEvents+"/"):
		seq, err := strconv.ParseUint(strings.TrimPrefix(uri, uriEvents+"/"), 10, 64)
		if err != nil {
			return nil, notFound
		}
		ev, err := s.opts.Audit.Event(ctx, c, seq)
		if errors.Is(err, ErrNotFound) {
			return nil, notFound
		} else if err != nil {
			return nil, s.internal(err)
		}
		return &sdk.ResourceContents{URI: uri, MIMEType: jsonMIME, Text: string(ev)}, nil
	case strings.HasPrefix(uri, uriCells):
		name, lineage := strings.CutSuffix(strings.TrimPrefix(uri, uriCells), "/lineage")
		cell, err := s.opts.Cells.Head(ctx, name)
		if errors.Is(err, ErrNotFound) || err == nil && !c.Sees(cell.Tenant) {
			return nil, notFound
		} else if err != nil {
			return nil, s.internal(err)
		}
		var body []byte
		if lineage {
			l, err := s.opts.Cells.Lineage(ctx, c, name)
			if errors.Is(err, ErrNotFound) {
				return nil, notFound
			} else if err != nil {
				return nil, s.internal(err)
			}
			body = l
		} else {
			body, _ = json.Marshal(map[string]any{"name": cell.Name, "identity": cell.Identity, "tenant": cell.Tenant, "manifest": json.RawMessage(cell.Manifest.Canonical())})
		}
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
		return &sdk.ResourceContents{URI: uri, MIMEType: jsonMIME, Text: string(body)}, nil
	}
	d, err := s.opts.Vault.Lookup(ctx, uri)
	if errors.Is(err, ErrNotFound) || err == nil && !c.Sees(d.Tenant) {
		return nil, notFound
	} else if err != nil {
		return nil, s.internal(err)
	}
	data, err := s.opts.Vault.Read(ctx, c, d)
	if err != nil {
		return nil, s.internal(err)
	}
	rc := &sdk.ResourceContents{URI: uri, MIMEType: d.MIME, Meta: sdk.Meta{"tcc/sha256": d.Digest, "tcc/vault": d.URI()}}
	if isText(d.MIME) && utf8.Valid(data) {
		rc.Text = string(data)
	} else {
		rc.Blob = data
	}
	return rc, nil
}

// isText reports whether a MIME type is sent as text rather than base64.
func isText(mt string) bool {
	base, _, err := mime.ParseMediaType(mt)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(base, "text/"), strings.HasSuffix(base, "+json"), strings.HasSuffix(base, "+xml"), strings.HasSuffix(base, "+yaml"):
		return true
	}
	return slices.Contains([]string{"application/json", "application/xml", "application/yaml", "application/x-yaml", "application/toml"}, base)
}

// internal answers an error that is tccd's, not the client's: the
// details (paths, store errors) go to the log; the client learns that it
// happened.
func (s *Server) internal(err error) error {
	s.log.Error("mcp: internal error", logErr, err)
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error in tccd (its log has the details); if it persists, report it"}
}

// subscribe accepts a subscription to a resource the caller may read.
func (s *Server) subscribe(ctx context.Context, req *sdk.SubscribeRequest) error {
	c := callerOf(req)
	uri := req.Params.URI
	if !c.Has(ScopeResourcesRead) {
		return forbidden("subscribing to %s needs scope %s", uri, ScopeResourcesRead)
	}
	s.mu.Lock()
	t, ok := s.resources[uri]
	s.mu.Unlock()
	if !ok || !c.Sees(t) {
		return sdk.ResourceNotFoundError(uri)
	}
	return nil
}

// complete offers values for resource template arguments: tenants and
// paths of the vault, cell names. Prompt arguments are free text.
func (s *Server) complete(ctx context.Context, req *sdk.CompleteRequest) (*sdk.CompleteResult, error) {
	c := callerOf(req)
	ref, arg := req.Params.Ref, req.Params.Argument
	var values []string
	if ref.Type == "ref/resource" {
		if !c.Has(ScopeResourcesRead) {
			return nil, forbidden("completion of %s needs scope %s", ref.URI, ScopeResourcesRead)
		}
		switch ref.URI {
		case tmplVault:
			docs, err := s.opts.Vault.Documents(ctx)
			if err != nil {
				return nil, s.internal(err)
			}
			var tenant string
			if req.Params.Context != nil {
				tenant = req.Params.Context.Arguments["tenant"]
			}
			for _, d := range docs {
				if !c.Sees(d.Tenant) {
					continue
				}
				switch arg.Name {
				case "tenant":
					values = append(values, d.Tenant)
				case "path":
					if tenant == "" || tenant == d.Tenant {
						values = append(values, d.Path)
					}
				}
			}
		case tmplCell, tmplLineage:
			s.mu.Lock()
			for name, e := range s.tools {
				if c.Sees(e.tenant) {
					values = append(values, name)
				}
			}
			s.mu.Unlock()
		}
	} else if !c.Has(ScopePromptsGet) {
		return nil, forbidden("completion of prompt arguments needs scope %s", ScopePromptsGet)
	}
	values = slices.DeleteFunc(values, func(v string) bool { return !strings.HasPrefix(v, arg.Value) })
	slices.Sort(values)
	values = slices.Compact(values)
	total := len(values)
	if len(values) > 100 {
		values = values[:100]
	}
	return &sdk.CompleteResult{Completion: sdk.CompletionResultDetails{Values: append([]string{}, values...), Total: total, HasMore: total > len(values)}}, nil
}
