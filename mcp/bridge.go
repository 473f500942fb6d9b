package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Bridge serves MCP to one host over host (for `tccctl mcp`, stdio) and
// forwards it to tccd over upstream (the Streamable HTTP endpoint). It is
// two SDK sessions joined: the local server mirrors the daemon's tools,
// prompts and resources (re-listed whenever the daemon says a list
// changed) and forwards calls, reads, completions and subscriptions;
// progress, log messages and resource updates flow back. Cancelling a call
// on the host side cancels it at the daemon, which kills its sandbox.
//
// When the upstream session ends (tccd stopped or restarted, or closed an
// idle session), the bridge connects again, retrying until it can, lists
// everything again (the host gets list_changed notifications) and renews
// the host's subscriptions; calls made meanwhile fail. It returns when the
// host closes the session or ctx is done.
func Bridge(ctx context.Context, host, upstream sdk.Transport, version string, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &bridge{log: log, transport: upstream, subs: map[string]bool{}}
	b.client = sdk.NewClient(&sdk.Implementation{Name: "tccctl-mcp", Version: version}, &sdk.ClientOptions{
		// Re-list off the client's notification path: listing waits for
		// answers that path may have to deliver.
		ToolListChangedHandler:     func(context.Context, *sdk.ToolListChangedRequest) { go b.syncTools(ctx) },
		PromptListChangedHandler:   func(context.Context, *sdk.PromptListChangedRequest) { go b.syncPrompts(ctx) },
		ResourceListChangedHandler: func(context.Context, *sdk.ResourceListChangedRequest) { go b.syncResources(ctx) },
		ResourceUpdatedHandler: func(ctx context.Context, r *sdk.ResourceUpdatedNotificationRequest) {
			if srv, _ := b.ends(); srv != nil {
				_ = srv.ResourceUpdated(ctx, r.Params)
			}
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
	cs, err := b.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to tccd: %w", err)
	}
	defer func() {
		cancel() // first: keepConnected must not take the close for a lost tccd
		_ = b.upstream().Close()
	}()
	init := cs.InitializeResult()
	if init == nil {
		init = &sdk.InitializeResult{}
	}
	caps := capsOf(init)
	impl := &sdk.Implementation{Name: "tccd", Version: version}
	if init.ServerInfo != nil {
		impl = init.ServerInfo
	}
	opts := &sdk.ServerOptions{Instructions: init.Instructions, Capabilities: caps, Logger: log}
	if caps.Completions != nil {
		opts.CompletionHandler = func(ctx context.Context, r *sdk.CompleteRequest) (*sdk.CompleteResult, error) {
			p := *r.Params
			p.Meta = ownMeta(p.Meta)
			return b.upstream().Complete(ctx, &p)
		}
	}
	if caps.Resources != nil && caps.Resources.Subscribe {
		opts.SubscribeHandler = func(ctx context.Context, r *sdk.SubscribeRequest) error {
			if err := b.upstream().Subscribe(ctx, &sdk.SubscribeParams{URI: r.Params.URI}); err != nil {
				return err
			}
			b.mu.Lock()
			b.subs[r.Params.URI] = true // renewed after a reconnection
			b.mu.Unlock()
			return nil
		}
		opts.UnsubscribeHandler = func(ctx context.Context, r *sdk.UnsubscribeRequest) error {
			b.mu.Lock()
			delete(b.subs, r.Params.URI)
			b.mu.Unlock()
			return b.upstream().Unsubscribe(ctx, &sdk.UnsubscribeParams{URI: r.Params.URI})
		}
	}
	b.mu.Lock()
	b.server = sdk.NewServer(impl, opts)
	b.mu.Unlock()
	b.syncAll(ctx)

	ss, err := b.server.Connect(ctx, host, nil)
	if err != nil {
		return fmt.Errorf("serve the host: %w", err)
	}
	b.mu.Lock()
	b.host = ss
	b.mu.Unlock()
	go b.keepConnected(ctx, cs)
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

// upstreamVersion is the protocol the bridge speaks to tccd: a session
// (2025-11-25) rather than the stateless 2026-07-28, because a session's
// standing notification stream ends the session when tccd goes away, which
// is how the bridge learns that it must reconnect; a stateless
// subscriptions/listen stream that breaks is dropped without a word.
const upstreamVersion = "2025-11-25"

func (b *bridge) connect(ctx context.Context) (*sdk.ClientSession, error) {
	cs, err := b.client.Connect(ctx, b.transport, &sdk.ClientSessionOptions{ProtocolVersion: upstreamVersion})
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.up = cs
	b.mu.Unlock()
	return cs, nil
}

// keepConnected waits for the upstream session to end and connects again,
// backing off up to maxBackoff between attempts, until ctx is done.
func (b *bridge) keepConnected(ctx context.Context, cs *sdk.ClientSession) {
	const maxBackoff = 5 * time.Second
	for {
		err := cs.Wait()
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("bridge: lost tccd; reconnecting", logErr, err)
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, maxBackoff) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if cs, err = b.connect(ctx); err == nil {
				break
			}
			b.log.Debug("bridge: tccd still unreachable", logErr, err)
		}
		b.syncAll(ctx)
		b.mu.Lock()
		uris := slices.Collect(maps.Keys(b.subs))
		b.mu.Unlock()
		for _, uri := range uris {
			if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: uri}); err != nil {
				b.log.Warn("bridge: cannot renew a subscription", "uri", uri, logErr, err)
			}
		}
		b.log.Warn("bridge: reconnected to tccd")
	}
}

// capsOf is a server's capabilities, never nil.
func capsOf(init *sdk.InitializeResult) *sdk.ServerCapabilities {
	if init == nil || init.Capabilities == nil {
		return &sdk.ServerCapabilities{}
	}
	return init.Capabilities
}

type bridge struct {
	log       *slog.Logger
	client    *sdk.Client
	transport sdk.Transport

	mu     sync.Mutex // guards the fields below
	up     *sdk.ClientSession
	server *sdk.Server
	host   *sdk.ServerSession
	subs   map[string]bool // resources the host subscribed to

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

// upstream is the current session to tccd.
func (b *bridge) upstream() *sdk.ClientSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.up
}

// ends are the local server and the current upstream session; the server
// is nil until it is built (a notification may come first).
func (b *bridge) ends() (*sdk.Server, *sdk.ClientSession) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.server, b.up
}

func (b *bridge) syncAll(ctx context.Context) {
	b.syncTools(ctx)
	b.syncPrompts(ctx)
	b.syncResources(ctx)
}

// mirror makes have (the names mirrored so far) equal to the names listed
// upstream: add adds or replaces one, remove drops the rest.
func mirror[T any](b *bridge, have *map[string]bool, list func(yield func(T, error) bool), key func(T) string, add func(T) error, remove func(...string)) {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	seen := map[string]bool{}
	for item, err := range list {
		if err != nil {
			b.log.Warn("bridge: listing from tccd failed; the host keeps the previous list", logErr, err)
			return
		}
		if err := add(item); err != nil {
			b.log.Warn("bridge: cannot mirror an item", "name", key(item), logErr, err)
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
	srv, up := b.ends()
	if srv == nil || capsOf(up.InitializeResult()).Tools == nil {
		return
	}
	mirror(b, &b.tools, up.Tools(ctx, nil), func(t *sdk.Tool) string { return t.Name }, func(t *sdk.Tool) error {
		return addTool(srv, t, func(ctx context.Context, r *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			res, err := b.upstream().CallTool(ctx, &sdk.CallToolParams{Meta: ownMeta(r.Params.Meta), Name: r.Params.Name, Arguments: r.Params.Arguments})
			if err != nil {
				return nil, err
			}
			// A fresh result: the host's session may speak an older protocol
			// than the upstream one, whose result fields it would not know.
			return &sdk.CallToolResult{Meta: ownMeta(res.Meta), Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}, nil
		})
	}, srv.RemoveTools)
}

func (b *bridge) syncPrompts(ctx context.Context) {
	srv, up := b.ends()
	if srv == nil || capsOf(up.InitializeResult()).Prompts == nil {
		return
	}
	mirror(b, &b.prompts, up.Prompts(ctx, nil), func(p *sdk.Prompt) string { return p.Name }, func(p *sdk.Prompt) error {
		srv.AddPrompt(p, func(ctx context.Context, r *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
			res, err := b.upstream().GetPrompt(ctx, &sdk.GetPromptParams{Meta: ownMeta(r.Params.Meta), Name: r.Params.Name, Arguments: r.Params.Arguments})
			if err != nil {
				return nil, err
			}
			return &sdk.GetPromptResult{Meta: ownMeta(res.Meta), Description: res.Description, Messages: res.Messages}, nil
		})
		return nil
	}, srv.RemovePrompts)
}

func (b *bridge) syncResources(ctx context.Context) {
	srv, up := b.ends()
	if srv == nil || capsOf(up.InitializeResult()).Resources == nil {
		return
	}
	read := func(ctx context.Context, r *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
		res, err := b.upstream().ReadResource(ctx, &sdk.ReadResourceParams{Meta: ownMeta(r.Params.Meta), URI: r.Params.URI})
		if err != nil {
			return nil, err
		}
		return &sdk.ReadResourceResult{Meta: ownMeta(res.Meta), Contents: res.Contents}, nil
	}
	mirror(b, &b.resources, up.Resources(ctx, nil), func(r *sdk.Resource) string { return r.URI }, func(r *sdk.Resource) error {
		return addResource(srv, r, read)
	}, srv.RemoveResources)
	mirror(b, &b.templates, up.ResourceTemplates(ctx, nil), func(t *sdk.ResourceTemplate) string { return t.URITemplate }, func(t *sdk.ResourceTemplate) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		srv.AddResourceTemplate(t, read)
		return nil
	}, srv.RemoveResourceTemplates)
}

// ownMeta drops the protocol keys of one session from a _meta that
// crosses to the other (each session's SDK adds its own: a host's
// 2026-07-28 keys would make tccd refuse a request of the bridge's
// 2025-11-25 session) and keeps the rest (TCC's, progressToken).
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
