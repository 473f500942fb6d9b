package prompt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

const valid = `version: tcc-prompt/v1
name: audit-review
description: Review a system against a policy.
arguments:
  - name: system
    required: true
  - name: focus
messages:
  - role: user
    text: "Review {{system}} (focus: {{ focus }})."
  - role: user
    resource: vault://acme/policies/{{system}}.md
`

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // substring of the error; "" = valid
	}{
		{"valid", valid, ""},
		{"json", `{"version":"tcc-prompt/v1","name":"p","description":"d","messages":[{"role":"user","text":"hi"}]}`, ""},
		{"unknown field", valid + "extra: 1\n", "field extra not found"},
		{"bad version", strings.Replace(valid, "tcc-prompt/v1", "v2", 1), "version:"},
		{"bad name", strings.Replace(valid, "audit-review", "Audit Review", 1), "name:"},
		{"no description", strings.Replace(valid, "description: Review a system against a policy.", "description: ''", 1), "description: required"},
		{"undeclared placeholder", strings.Replace(valid, "{{system}} (", "{{sistem}} (", 1), "messages[0].text: placeholder {{sistem}}"},
		{"bad role", strings.Replace(valid, "role: user\n    text", "role: system\n    text", 1), "messages[0].role"},
		{"text and resource", strings.Replace(valid, "    resource: vault", "    text: x\n    resource: vault", 1), "messages[1]: has both"},
		{"relative resource", strings.Replace(valid, "vault://acme/policies/{{system}}.md", "policies/x.md", 1), "not an absolute URI"},
		{"duplicate argument", strings.Replace(valid, "name: focus", "name: system", 1), "declared twice"},
		{"two documents", valid + "---\nname: x\n", "more than one YAML document"},
		{"bad parent", valid + "parent: sha256:12\n", "parent:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if !strings.HasPrefix(string(p.Identity()), "sha256:") {
					t.Errorf("identity %q", p.Identity())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error = %v, want one containing %q wrapping ErrInvalid", err, tt.want)
			}
		})
	}
}

func TestCanonicalIdentity(t *testing.T) {
	a, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	// Comments and layout are not part of the identity; content is.
	b, err := Parse([]byte("# a comment\n" + strings.ReplaceAll(valid, "  - name: focus", "  - {name: focus}")))
	if err != nil {
		t.Fatal(err)
	}
	if a.Identity() != b.Identity() {
		t.Errorf("same content, different identities: %s %s", a.Identity(), b.Identity())
	}
	c, _ := Parse([]byte(strings.Replace(valid, "Review {{system}}", "Audit {{system}}", 1)))
	if c.Identity() == a.Identity() {
		t.Error("different text, same identity")
	}
	// The canonical encoding parses back to the same prompt.
	d, err := Parse(a.Canonical())
	if err != nil || d.Identity() != a.Identity() {
		t.Errorf("canonical round trip: %v, %s != %s", err, d.Identity(), a.Identity())
	}
}

func TestRender(t *testing.T) {
	p, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args map[string]string
		want []Part
		err  string
	}{
		{"all", map[string]string{"system": "billing", "focus": "access"}, []Part{
			{Role: "user", Text: "Review billing (focus: access)."},
			{Role: "user", ResourceURI: "vault://acme/policies/billing.md"},
		}, ""},
		{"optional left out", map[string]string{"system": "hr"}, []Part{
			{Role: "user", Text: "Review hr (focus: )."},
			{Role: "user", ResourceURI: "vault://acme/policies/hr.md"},
		}, ""},
		{"required missing", map[string]string{"focus": "x"}, nil, `needs argument "system"`},
		{"unknown", map[string]string{"system": "a", "color": "red"}, nil, `has no argument "color"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Render(tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrArguments) {
					t.Fatalf("Render error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d parts, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("part %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, File), []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(nil, "dev")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	trust := note.VerifierList(verifier)

	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(c, trust); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("unsigned: %v, want ErrNotSigned", err)
	}
	if err := Sign(c, signer); err != nil {
		t.Fatal(err)
	}
	// Through a tar, as registration receives it.
	var buf bytes.Buffer
	if err := c.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTar(&buf, "upload")
	if err != nil {
		t.Fatal(err)
	}
	if signers, err := Verify(got, trust); err != nil || len(signers) != 1 || signers[0] != "dev" {
		t.Fatalf("Verify = %v, %v", signers, err)
	}

	id := c.Prompt.Identity()
	tests := []struct {
		name string
		text string
		want error
	}{
		// A cell signature over the same identity is not a prompt signature.
		{"cell signature", "tcc cell signature v1\n" + string(id) + "\n", ErrWrongDomain},
		{"other identity", SignedText(manifest.Identity("sha256:" + strings.Repeat("0", 64))), ErrIdentityMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := note.Sign(&note.Note{Text: tt.text}, signer)
			if err != nil {
				t.Fatal(err)
			}
			forged := *got
			forged.Sig = sig
			if _, err := Verify(&forged, trust); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	other, _, _ := note.GenerateKey(nil, "stranger")
	os2, _ := note.NewSigner(other)
	sig, _ := note.Sign(&note.Note{Text: SignedText(id)}, os2)
	forged := *got
	forged.Sig = sig
	if _, err := Verify(&forged, trust); !errors.Is(err, ErrUntrustedSigner) {
		t.Errorf("untrusted signer: %v", err)
	}
}

func TestReadTarRefusesOtherEntries(t *testing.T) {
	var buf bytes.Buffer
	c := &Capsule{Raw: []byte(valid), Sig: []byte("x")}
	if err := c.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	// Rename prompt.sig to something else in the tar header.
	b := bytes.Replace(buf.Bytes(), []byte(SignatureFile), []byte("evil.bin\x00\x00"), 1)
	if _, err := ReadTar(bytes.NewReader(b), "t"); err == nil || !strings.Contains(err.Error(), "unexpected entry") && !strings.Contains(err.Error(), "not a tar") {
		t.Errorf("ReadTar = %v, want a refusal", err)
	}
}
