package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// SocketEndpoint is the MCP endpoint's URL for an HTTP client from
// SocketClient: the host part is ignored, every request goes to the socket.
const SocketEndpoint = "http://tccd/mcp"

// SocketClient returns an HTTP client that sends every request to tccd's
// Unix socket, with "Authorization: Bearer token" when token is set (the
// daemon then identifies the caller by the token, not the peer
// credentials).
func SocketClient(socket, token string) *http.Client {
	var rt http.RoundTripper = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	if token != "" {
		rt = bearer{token, rt}
	}
	return &http.Client{Transport: rt}
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// Bridge serves MCP to one host over host (for `tccctl mcp`, stdio) and
// forwards it to tccd over upstream (the Streamable HTTP endpoint). It is
// two SDK sessions joined: the local server mirrors the daemon's tools,
// prompts and resources (re-listed whenever the daemon says a list
// changed) and forwards calls, reads, completions and subscriptions;
// progress, log messages and resource updates flow back. Cancelling a call
// on the host side cancels it at the daemon, which kills its sandbox. It
// returns when the host closes the session or ctx is done.
func Bridge(ctx context.Context, host, upstream sdk.Transport, version string, log *slog.Logger) error {
	b := &bridge{log: log}
	client := sdk.NewClient(&sdk.Implementation{Name: "tccctl-mcp", Version: version}, &sdk.ClientOptions{
		// Re-list off the client's notification path: listing waits for
		// answers that path may have to deliver.
		ToolListChangedHandler:     func(context.Context, *sdk.ToolListChangedRequest) { go b.syncTools(ctx) },
		PromptListChangedHandler:   func(context.Context, *sdk.PromptListChangedRequest) { go b.syncPrompts(ctx) },
		ResourceListChangedHandler: func(context.Context, *sdk.ResourceListChangedRequest) { go b.syncResources(ctx) },
		ResourceUpdatedHandler: func(ctx context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
			_ = b.server.ResourceUpdated(ctx, r.Params)
		},
		//lint:ignore SA1019 logging is deprecated in 2026-07-28 but hosts on 2025-11-25 still use it
		LoggingMessageHandler: func(ctx context.Context, r *sdk.LoggingMessageRequest) {
			if hs := b.hostSession(); hs != nil {
				//lint:ignore SA1019 as above
				_ = hs.Log(ctx, r.Params)
			}
		},
		ProgressNotificationHandler: func(ctx context.Context, r *sdk.ProgressNotificationClientRequest) {
			if hs := b.hostSession(); hs != nil {
				_ = hs.NotifyProgress(ctx, r.Params)
			}
		},
	})
	cs, err := client.Connect(ctx, upstream, nil)
	if err != nil {
		return fmt.Errorf("connect to tccd: %w", err)
	}
	defer cs.Close()
	b.up = cs
	init := cs.InitializeResult()
	caps := &sdk.ServerCapabilities{}
	if init != nil && init.Capabilities != nil {
		caps = init.Capabilities
	}
	impl := &sdk.Implementation{Name: "tccd", Version: version}
	instructions := ""
	if init != nil {
		if init.ServerInfo != nil {
			impl = init.ServerInfo
		}
		instructions = init.Instructions
	}
	opts := &sdk.ServerOptions{Instructions: instructions, Capabilities: caps, Logger: log}
	if caps.Completions != nil {
		opts.CompletionHandler = func(ctx context.Context, r *sdk.CompleteRequest) (*sdk.CompleteResult, error) {
			return cs.Complete(ctx, r.Params)
		}
	}
	if caps.Resources != nil && caps.Resources.Subscribe {
		opts.SubscribeHandler = func(ctx context.Context, r *sdk.SubscribeRequest) error { return cs.Subscribe(ctx, r.Params) }
		opts.UnsubscribeHandler = func(ctx context.Context, r *sdk.UnsubscribeRequest) error { return cs.Unsubscribe(ctx, r.Params) }
	}
	b.server = sdk.NewServer(impl, opts)
	b.syncTools(ctx)
	b.syncPrompts(ctx)
	b.syncResources(ctx)

	ss, err := b.server.Connect(ctx, host, nil)
	if err != nil {
		return fmt.Errorf("serve the host: %w", err)
	}
	b.mu.Lock()
	b.host = ss
	b.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- ss.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		ss.Close()
		err = <-done
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

type bridge struct {
	log    *slog.Logger
	up     *sdk.ClientSession
	server *sdk.Server

	mu   sync.Mutex // guards host
	host *sdk.ServerSession

	syncMu    sync.Mutex // serialises mirroring; guards the sets below
	tools     map[string]bool
	prompts   map[string]bool
	resources map[string]bool
	templates map[string]bool
}

func (b *bridge) hostSession() *sdk.ServerSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.host
}

// mirror makes have (the names mirrored so far) equal to the names listed
// upstream: add adds or replaces one, remove drops the rest.
func mirror[T any](b *bridge, have *map[string]bool, list func(yield func(T, error) bool), key func(T) string, add func(T) error, remove func(...string)) {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	seen := map[string]bool{}
	for item, err := range list {
		if err != nil {
			b.log.Warn("bridge: listing from tccd failed; the host keeps the previous list", "err", err)
			return
		}
		if err := add(item); err != nil {
			b.log.Warn("bridge: cannot mirror an item", "name", key(item), "err", err)
			continue
		}
		seen[key(item)] = true
	}
	var gone []string
	for k := range *have {
		if !seen[k] {
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 {
		remove(gone...)
	}
	*have = seen
}

func (b *bridge) syncTools(ctx context.Context) {
	if b.up.InitializeResult().Capabilities.Tools == nil {
		return
	}
	mirror(b, &b.tools, b.up.Tools(ctx, nil), func(t *sdk.Tool) string { return t.Name }, func(t *sdk.Tool) error {
		return addTool(b.server, t, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			res, err := b.up.CallTool(ctx, &sdk.CallToolParams{Meta: r.Params.Meta, Name: r.Params.Name, Arguments: r.Params.Arguments})
			if err != nil {
				return nil, err
			}
			// A fresh result: the host's session may speak an older protocol
			// than the upstream one, whose result fields it would not know.
			return &sdk.CallToolResult{Meta: ownMeta(res.Meta), Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}, nil
		})
	}, b.server.RemoveTools)
}

func (b *bridge) syncPrompts(ctx context.Context) {
	if b.up.InitializeResult().Capabilities.Prompts == nil {
		return
	}
	mirror(b, &b.prompts, b.up.Prompts(ctx, nil), func(p *sdk.Prompt) string { return p.Name }, func(p *sdk.Prompt) error {
		b.server.AddPrompt(p, func(ctx context.Context, r *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
			res, err := b.up.GetPrompt(ctx, r.Params)
			if err != nil {
				return nil, err
			}
			return &sdk.GetPromptResult{Meta: ownMeta(res.Meta), Description: res.Description, Messages: res.Messages}, nil
		})
		return nil
	}, b.server.RemovePrompts)
}

func (b *bridge) syncResources(ctx context.Context) {
	if b.up.InitializeResult().Capabilities.Resources == nil {
		return
	}
	read := func(ctx context.Context, r *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
		res, err := b.up.ReadResource(ctx, r.Params)
		if err != nil {
			return nil, err
		}
		return &sdk.ReadResourceResult{Meta: ownMeta(res.Meta), Contents: res.Contents}, nil
	}
	mirror(b, &b.resources, b.up.Resources(ctx, nil), func(r *sdk.Resource) string { return r.URI }, func(r *sdk.Resource) error {
		return addResource(b.server, r, read)
	}, b.server.RemoveResources)
	mirror(b, &b.templates, b.up.ResourceTemplates(ctx, nil), func(t *sdk.ResourceTemplate) string { return t.URITemplate }, func(t *sdk.ResourceTemplate) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		b.server.AddResourceTemplate(t, read)
		return nil
	}, b.server.RemoveResourceTemplates)
}

// ownMeta drops the upstream server's protocol keys from a result's _meta
// (the local server adds its own) and keeps TCC's.
func ownMeta(m sdk.Meta) sdk.Meta {
	out := sdk.Meta{}
	for k, v := range m {
		if !strings.HasPrefix(k, "io.modelcontextprotocol/") {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
