package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel/outcome"
)

// Meta keys TCC puts on tools and results.
const (
	MetaIdentity = "tcc/identity" // on a tool: the head identity it runs
	MetaCall     = "tcc/call"     // on a result: the audited call
	MetaPrompt   = "tcc/prompt"   // on a rendered prompt: what was rendered
)

// toolOf is the MCP tool of a cell's head, from its signed manifest.
func toolOf(c *Cell) *sdk.Tool {
	m := c.Manifest
	a := m.Annotations
	title := m.Title
	return &sdk.Tool{
		Name:         m.Name,
		Title:        title,
		Description:  m.Description,
		InputSchema:  json.RawMessage(m.Input),
		OutputSchema: json.RawMessage(m.Output),
		Annotations: &sdk.ToolAnnotations{
			Title:           title,
			ReadOnlyHint:    a.ReadOnly,
			DestructiveHint: &a.Destructive,
			IdempotentHint:  a.Idempotent,
			OpenWorldHint:   &a.OpenWorld,
		},
		Meta: sdk.Meta{MetaIdentity: c.Identity, "tcc/phase": string(m.Phase)},
	}
}

// setTool adds or replaces the tool of a cell's head.
func (s *Server) setTool(c *Cell) {
	if err := addTool(s.sdk, toolOf(c), s.callTool); err != nil {
		// The manifest passed registration; the SDK is stricter (an input
		// schema whose root is not an object, say): say why it is not listed.
		s.log.Warn("mcp: cell not offered as a tool", logCell, c.Name, logIdentity, c.Identity, logErr, err)
		s.removeTool(c.Name)
		return
	}
	s.mu.Lock()
	s.tools[c.Name] = toolEntry{tenant: c.Tenant, actuate: c.Manifest.Phase == manifest.PhaseActuate}
	s.resources[cellURI(c.Name)] = c.Tenant
	s.resources[cellURI(c.Name)+"/lineage"] = c.Tenant
	s.mu.Unlock()
	s.sdk.AddResource(&sdk.Resource{URI: cellURI(c.Name), Name: "cell " + c.Name, Title: "Contract of cell " + c.Name,
		Description: "The signed manifest (execution contract) of the head of " + c.Name, MIMEType: "application/json"}, s.readResource)
	s.sdk.AddResource(&sdk.Resource{URI: cellURI(c.Name) + "/lineage", Name: "lineage " + c.Name, Title: "Lineage of cell " + c.Name,
		Description: "Every identity " + c.Name + " has had, and the head moves", MIMEType: "application/json"}, s.readResource)
}

func (s *Server) removeTool(name string) {
	s.mu.Lock()
	delete(s.tools, name)
	delete(s.resources, cellURI(name))
	delete(s.resources, cellURI(name)+"/lineage")
	s.mu.Unlock()
	s.sdk.RemoveTools(name)
	s.sdk.RemoveResources(cellURI(name), cellURI(name)+"/lineage")
}

// addTool is sdk.Server.AddTool, which panics on a tool it refuses.
func addTool(srv *sdk.Server, t *sdk.Tool, h sdk.ToolHandler) (err error) {
	var root struct {
		Type any `json:"type"`
	}
	b, err := json.Marshal(t.InputSchema)
	if err != nil {
		return fmt.Errorf("input schema of %s: %v", t.Name, err)
	}
	if err := json.Unmarshal(b, &root); err != nil || root.Type != "object" {
		return fmt.Errorf("input schema of %s: MCP needs \"type\": \"object\" at the root", t.Name)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	srv.AddTool(t, h)
	return nil
}

func (s *Server) tool(name string) (toolEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.tools[name]
	return e, ok
}

// callTool runs one call of a cell through the daemon.
func (s *Server) callTool(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	c := callerOf(req)
	name := req.Params.Name
	e, ok := s.tool(name)
	if !ok || !c.Sees(e.tenant) {
		return nil, invalidParams("unknown tool %q", name)
	}
	if !c.Has(ScopeToolsCall) {
		return nil, forbidden("calling %s needs scope %s", name, ScopeToolsCall)
	}
	// The daemon checks both scopes again against the cell that runs
	// (the head may move after this cached entry was made); this only
	// answers early.
	if e.actuate && !c.Has(ScopeActuate) {
		return nil, forbidden("cell %s is an actuate-phase cell: calling it needs scope %s", name, ScopeActuate)
	}
	input := json.RawMessage(req.Params.Arguments)
	if t := bytes.TrimSpace(input); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		input = json.RawMessage("{}")
	}
	token := req.Params.GetProgressToken()
	progress := func(p Progress) {
		if token != nil {
			_ = req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: p.Progress, Total: p.Total, Message: p.Message})
		}
		// Hosts that show logs but not progress still see what the cell
		// says it is doing (sent only if the client set a log level).
		if p.Message != "" {
			//lint:ignore SA1019 logging is deprecated in 2026-07-28 but hosts on 2025-11-25 still use it
			_ = req.Session.Log(ctx, &sdk.LoggingMessageParams{Level: "info", Logger: "tcc/" + name, Data: p.Message})
		}
	}
	o, err := s.opts.Runner.Call(ctx, c, name, input, progress)
	switch {
	case errors.Is(err, ErrInvalidInput), errors.Is(err, ErrBusy):
		// Input errors are tool errors so the model can correct itself;
		// nothing ran and nothing was audited.
		return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: err.Error()}}}, nil
	case errors.Is(err, ErrNotFound):
		return nil, invalidParams("unknown tool %q: %v", name, err)
	case errors.Is(err, ErrForbidden):
		return nil, forbidden("%v", err)
	case err != nil:
		return nil, s.internal(fmt.Errorf("cell %s: %w", name, err))
	}
	meta := sdk.Meta{MetaCall: map[string]any{
		"trace_id":    o.TraceID,
		"identity":    o.Identity,
		"verdict":     o.Verdict,
		"begin_seq":   o.BeginSeq,
		"end_seq":     o.EndSeq,
		"duration_ms": float64(o.Duration) / 1e6,
		"wipe_clean":  o.Wipe.Clean,
	}}
	if !o.OK() {
		text := o.Summary()
		if o.Verdict == outcome.Error && o.Stderr != "" {
			text += "\nstderr: " + o.Stderr
		}
		return &sdk.CallToolResult{Meta: meta, IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil
	}
	return &sdk.CallToolResult{Meta: meta, Content: contentOf(o.Result), StructuredContent: o.Result}, nil
}

// contentOf renders a cell's output for hosts that do not read
// structuredContent: the output as indented JSON, or, when the output
// carries a top-level "content" array of MCP content blocks (text, image,
// audio, resource, resource_link), those blocks.
func contentOf(result json.RawMessage) []sdk.Content {
	var probe struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(result, &probe) == nil && bytes.HasPrefix(bytes.TrimSpace(probe.Content), []byte("[")) {
		var r sdk.CallToolResult
		wire := append(append([]byte(`{"content":`), probe.Content...), '}')
		if json.Unmarshal(wire, &r) == nil && len(r.Content) > 0 {
			return r.Content
		}
	}
	var buf bytes.Buffer
	if json.Indent(&buf, result, "", "  ") != nil {
		return []sdk.Content{&sdk.TextContent{Text: string(result)}}
	}
	return []sdk.Content{&sdk.TextContent{Text: buf.String()}}
}
