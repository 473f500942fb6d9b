package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/daemon/api"
	"github.com/trustcells/tcc/ledger"
	"github.com/trustcells/tcc/mcp"
	"github.com/trustcells/tcc/mcp/prompt"
)

// Prompts are signed templates registered like cells, with their own
// lineage per name (a new version names the current head as its parent).
// They live under ledger keys
//
//	x/prompt/rec/<identity>        promptRecord (JSON)
//	x/prompt/head/<name>           identity of the head
//	x/prompt/lin/<name>/<seq>      identity registered by event seq
//
// written in the same batch as their prompt.register event.
const (
	typePromptRegister = "prompt.register" // not among ledger.Type*: the prompt store is the daemon's
	promptRecPrefix    = ledger.PrefixExternal + "prompt/rec/"
	promptHeadPrefix   = ledger.PrefixExternal + "prompt/head/"
	promptLinPrefix    = ledger.PrefixExternal + "prompt/lin/"
	maxPromptBody      = prompt.MaxSize + 128<<10
)

type promptRecord struct {
	Identity     manifest.Identity `json:"identity"`
	Name         string            `json:"name"`
	Parent       manifest.Identity `json:"parent,omitempty"`
	Prompt       json.RawMessage   `json:"prompt"` // canonical
	Signature    []byte            `json:"signature"`
	Signers      []string          `json:"signers"`
	Tenant       string            `json:"tenant,omitempty"`
	Seq          uint64            `json:"seq"`
	RegisteredNS int64             `json:"registered_ns"`
}

func promptLinKey(name string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(promptLinPrefix+name+"/"), seq)
}

func (d *Daemon) registerPrompt(w http.ResponseWriter, r *http.Request, c caller) error {
	body, err := readBody(w, r, maxPromptBody, func() error { return tooLarge("prompt capsule larger than %d bytes", maxPromptBody) })
	if err != nil {
		return err
	}
	caps, err := prompt.ReadTar(bytes.NewReader(body), "upload")
	if err != nil {
		return badRequest("prompt register: %v", err) // malformed, not a failed verification
	}
	signers, err := prompt.Verify(caps, d.trust.Load().verifiers)
	if err != nil {
		return &httpError{http.StatusUnprocessableEntity, api.CodeVerification, fmt.Errorf("prompt %s: %w", caps.Prompt.Name, err)}
	}
	tenant, err := d.registerTenant(r, caps.Prompt.Parent, func(id string) (string, error) { // register.go
		rec, err := d.promptRec(id)
		if err != nil {
			return "", err
		}
		return rec.Tenant, nil
	})
	if err != nil {
		return err
	}
	p := caps.Prompt
	id := p.Identity()
	rec := promptRecord{Identity: id, Name: p.Name, Parent: p.Parent, Prompt: p.Canonical(), Signature: caps.Sig, Signers: signers, Tenant: tenant}
	ev := &ledger.Event{Type: typePromptRegister, TraceID: ledger.NewTraceID(), Tenant: tenant, Caller: c.ID, Identity: id, Parent: p.Parent,
		Attrs: map[string]string{"prompt": p.Name, "signers": strings.Join(signers, ",")}}
	seq, err := d.ledger.Append(r.Context(), ev, func(tx *ledger.Txn) error {
		if _, err := tx.Get([]byte(promptRecPrefix + string(id))); err == nil {
			return fmt.Errorf("prompt %s %s: %w", p.Name, id, ledger.ErrExists)
		}
		head, err := tx.Get([]byte(promptHeadPrefix + p.Name))
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			if p.Parent != "" {
				return fmt.Errorf("%w: prompt %s has no version yet, so its first version names no parent (prompt.yaml says parent %s)", ledger.ErrLineage, p.Name, p.Parent)
			}
		case err != nil:
			return err
		case string(head) != string(p.Parent):
			return fmt.Errorf("%w: prompt %s: parent must be the current head %s (prompt.yaml says %q); set parent: %s and sign again", ledger.ErrLineage, p.Name, head, p.Parent, head)
		}
		ev := tx.Event()
		rec.Seq, rec.RegisteredNS = ev.Seq, ev.TimeNS
		b, _ := json.Marshal(rec)
		if err := tx.Set([]byte(promptRecPrefix+string(id)), b); err != nil {
			return err
		}
		if err := tx.Set([]byte(promptHeadPrefix+p.Name), []byte(id)); err != nil {
			return err
		}
		return tx.Set(promptLinKey(p.Name, ev.Seq), []byte(id))
	})
	if err != nil {
		return err
	}
	d.log.Info("prompt registered", "prompt", p.Name, logIdentity, id, "parent", p.Parent, "signers", signers, logTenant, tenant, logCaller, c.ID, logSeq, seq)
	if d.mcp != nil {
		d.mcp.PromptChanged(context.WithoutCancel(r.Context()), p.Name)
	}
	writeJSON(w, http.StatusCreated, api.Registered{Identity: string(id), Name: p.Name, Parent: string(p.Parent), Seq: seq})
	return nil
}

// promptRec loads a record by identity.
func (d *Daemon) promptRec(id string) (*promptRecord, error) {
	b, err := d.ledger.Get([]byte(promptRecPrefix + id))
	if err != nil {
		return nil, err
	}
	var rec promptRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: prompt record %s: %v", ledger.ErrCorrupt, id, err)
	}
	return &rec, nil
}

// promptHead is the head record of name (ledger.ErrNotFound if none).
func (d *Daemon) promptHead(name string) (*promptRecord, error) {
	id, err := d.ledger.Get([]byte(promptHeadPrefix + name))
	if err != nil {
		return nil, err
	}
	return d.promptRec(string(id))
}

// promptHeads lists the head of every prompt name.
func (d *Daemon) promptHeads() ([]*promptRecord, error) {
	var ids []string
	err := d.ledger.Scan([]byte(promptHeadPrefix), func(_, v []byte) error {
		ids = append(ids, string(v))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*promptRecord, 0, len(ids))
	for _, id := range ids {
		rec, err := d.promptRec(id)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// promptLineage lists the identities of name, oldest first.
func (d *Daemon) promptLineage(name string) ([]string, error) {
	var ids []string
	err := d.ledger.Scan([]byte(promptLinPrefix+name+"/"), func(_, v []byte) error {
		ids = append(ids, string(v))
		return nil
	})
	return ids, err
}

func (d *Daemon) listPrompts(w http.ResponseWriter, r *http.Request, c caller) error {
	heads, err := d.promptHeads()
	if err != nil {
		return err
	}
	out := []api.PromptSummary{}
	for _, rec := range heads {
		if !c.Sees(rec.Tenant) {
			continue
		}
		p, err := prompt.Parse(rec.Prompt)
		if err != nil {
			return fmt.Errorf("%w: stored prompt %s: %v", ledger.ErrCorrupt, rec.Identity, err)
		}
		ids, err := d.promptLineage(rec.Name)
		if err != nil {
			return err
		}
		out = append(out, api.PromptSummary{Name: rec.Name, Head: string(rec.Identity), Title: p.Title, Description: p.Description,
			Arguments: len(p.Arguments), Versions: len(ids), Tenant: rec.Tenant, RegisteredAt: nsTime(rec.RegisteredNS)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (d *Daemon) showPrompt(w http.ResponseWriter, r *http.Request, c caller) error {
	ref := r.PathValue("ref")
	var rec *promptRecord
	var err error
	if strings.HasPrefix(ref, "sha256:") {
		rec, err = d.promptRec(ref)
	} else {
		rec, err = d.promptHead(ref)
	}
	if errors.Is(err, ledger.ErrNotFound) || err == nil && !c.Sees(rec.Tenant) {
		return &httpError{http.StatusNotFound, api.CodeNotFound, fmt.Errorf("no prompt %q (tccctl prompt list shows them)", ref)}
	} else if err != nil {
		return err
	}
	head, _ := d.ledger.Get([]byte(promptHeadPrefix + rec.Name))
	ids, err := d.promptLineage(rec.Name)
	if err != nil {
		return err
	}
	out := api.Prompt{Identity: string(rec.Identity), Name: rec.Name, Parent: string(rec.Parent), Signers: rec.Signers, Tenant: rec.Tenant,
		Head: string(head) == string(rec.Identity), Seq: rec.Seq, RegisteredAt: nsTime(rec.RegisteredNS), Prompt: rec.Prompt, Lineage: []api.LineageEntry{}}
	for _, id := range ids {
		lr, err := d.promptRec(id)
		if err != nil {
			return err
		}
		if !c.Sees(lr.Tenant) {
			continue // another tenant's version of the name
		}
		out.Lineage = append(out.Lineage, api.LineageEntry{Identity: id, Parent: string(lr.Parent), Seq: lr.Seq, RegisteredAt: nsTime(lr.RegisteredNS), Head: id == string(head)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// mcpPrompts is the prompt store as the MCP endpoint sees it.
type mcpPrompts struct{ d *Daemon }

func (p mcpPrompts) toMCP(rec *promptRecord) (*mcp.Prompt, error) {
	pr, err := prompt.Parse(rec.Prompt)
	if err != nil {
		return nil, fmt.Errorf("%w: stored prompt %s: %v", ledger.ErrCorrupt, rec.Identity, err)
	}
	return &mcp.Prompt{Prompt: pr, Identity: string(rec.Identity), Tenant: rec.Tenant}, nil
}

func (p mcpPrompts) Heads(context.Context) ([]mcp.Prompt, error) {
	recs, err := p.d.promptHeads()
	if err != nil {
		return nil, err
	}
	out := make([]mcp.Prompt, 0, len(recs))
	for _, rec := range recs {
		mp, err := p.toMCP(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, *mp)
	}
	return out, nil
}

func (p mcpPrompts) Head(_ context.Context, name string) (*mcp.Prompt, error) {
	rec, err := p.d.promptHead(name)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("prompt %s: %w", name, mcp.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	return p.toMCP(rec)
}
