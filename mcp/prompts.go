package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/trustcells/tcc/mcp/prompt"
)

// setPrompt adds or replaces the prompt of a head.
func (s *Server) setPrompt(p *Prompt) {
	args := make([]*sdk.PromptArgument, 0, len(p.Arguments))
	for _, a := range p.Arguments {
		args = append(args, &sdk.PromptArgument{Name: a.Name, Description: a.Description, Required: a.Required})
	}
	s.mu.Lock()
	s.prompts[p.Name] = p.Tenant
	s.mu.Unlock()
	s.sdk.AddPrompt(&sdk.Prompt{Name: p.Name, Title: p.Title, Description: p.Description, Arguments: args,
		Meta: sdk.Meta{MetaIdentity: p.Identity}}, s.getPrompt)
}

// getPrompt renders the current head of a prompt for the caller. Embedded
// resources are read as resources/read would (same scope and tenant rules,
// vault reads recorded); the result's _meta names the prompt identity, the
// arguments' hash and each embedded resource's digest, so the exact prompt
// can be reproduced.
func (s *Server) getPrompt(ctx context.Context, req *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
	c := callerOf(req)
	name := req.Params.Name
	s.mu.Lock()
	tenant, ok := s.prompts[name]
	s.mu.Unlock()
	if !ok || !c.Sees(tenant) {
		return nil, invalidParams("unknown prompt %q", name)
	}
	p, err := s.opts.Prompts.Head(ctx, name)
	// The head may have moved since the list was cached: judge the one
	// that is rendered.
	if errors.Is(err, ErrNotFound) || err == nil && !c.Sees(p.Tenant) {
		return nil, invalidParams("unknown prompt %q", name)
	} else if err != nil {
		return nil, s.internal(err)
	}
	args := req.Params.Arguments
	if args == nil {
		args = map[string]string{}
	}
	parts, err := p.Render(args)
	if errors.Is(err, prompt.ErrArguments) {
		return nil, invalidParams("%s", strings.TrimPrefix(err.Error(), prompt.ErrArguments.Error()+": "))
	} else if err != nil {
		return nil, s.internal(err)
	}
	type embedded struct {
		URI    string `json:"uri"`
		SHA256 string `json:"sha256,omitempty"`
	}
	var resources []embedded
	res := &sdk.GetPromptResult{Description: p.Description}
	for _, part := range parts {
		msg := &sdk.PromptMessage{Role: sdk.Role(part.Role)}
		if part.ResourceURI == "" {
			msg.Content = &sdk.TextContent{Text: part.Text}
			res.Messages = append(res.Messages, msg)
			continue
		}
		rc, err := s.read(ctx, c, part.ResourceURI)
		var nf resourceNotFound
		if errors.As(err, &nf) {
			return nil, invalidParams("prompt %s embeds %s, which does not exist or is not visible to %s", name, part.ResourceURI, c.ID)
		} else if err != nil {
			return nil, err
		}
		digest, _ := rc.Meta["tcc/sha256"].(string)
		resources = append(resources, embedded{URI: part.ResourceURI, SHA256: digest})
		msg.Content = contentOfResource(rc)
		res.Messages = append(res.Messages, msg)
	}
	argsJSON, _ := json.Marshal(args) // map keys sorted: a stable hash
	sum := sha256.Sum256(argsJSON)
	res.Meta = sdk.Meta{MetaPrompt: map[string]any{
		"name":             p.Name,
		"identity":         p.Identity,
		"arguments_sha256": "sha256:" + hex.EncodeToString(sum[:]),
		"resources":        resources,
	}}
	return res, nil
}

// contentOfResource is how an embedded resource appears in a prompt: an
// image or audio document as image or audio content, anything else as an
// embedded resource.
func contentOfResource(rc *sdk.ResourceContents) sdk.Content {
	switch {
	case strings.HasPrefix(rc.MIMEType, "image/") && rc.Blob != nil:
		return &sdk.ImageContent{Data: rc.Blob, MIMEType: rc.MIMEType}
	case strings.HasPrefix(rc.MIMEType, "audio/") && rc.Blob != nil:
		return &sdk.AudioContent{Data: rc.Blob, MIMEType: rc.MIMEType}
	}
	return &sdk.EmbeddedResource{Resource: rc}
}
