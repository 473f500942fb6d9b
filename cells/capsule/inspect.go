package capsule

import (
	"errors"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
)

// Summary is what `tccctl cell inspect` shows of a capsule. It marshals to
// JSON with sizes and durations in their human form ("64MiB", "10s").
type Summary struct {
	Identity    manifest.Identity `json:"identity"`
	Name        string            `json:"name"`
	Title       string            `json:"title,omitempty"`
	Description string            `json:"description"`
	Parent      manifest.Identity `json:"parent,omitempty"`

	// Verified is true when the capsule passed Verify against the trust
	// given; Signers are then the trusted signers. Otherwise Signers are
	// the key names cell.sig claims, unchecked, and Problem says why the
	// capsule did not verify.
	Verified bool     `json:"verified"`
	Signers  []string `json:"signers"`
	Problem  string   `json:"problem,omitempty"`

	Entrypoint     string                    `json:"entrypoint"`
	Args           []string                  `json:"args"`
	Phase          manifest.Phase            `json:"phase"`
	Annotations    manifest.Annotations      `json:"annotations"`
	Limits         LimitsSummary             `json:"limits"`
	Syscalls       manifest.Syscalls         `json:"syscalls"`
	Filesystem     manifest.Filesystem       `json:"filesystem"`
	Network        manifest.Network          `json:"network"`
	Nondeterminism []manifest.Nondeterminism `json:"nondeterminism"`
	Monitor        manifest.Monitor          `json:"monitor"`
	Examples       int                       `json:"examples"`
	Files          []FileSummary             `json:"files"`
}

// LimitsSummary is manifest.Limits in human form.
type LimitsSummary struct {
	Memory    string  `json:"memory"`
	Pids      int     `json:"pids"`
	CPU       float64 `json:"cpu"`
	Wall      string  `json:"wall"`
	Input     string  `json:"input"`
	Output    string  `json:"output"`
	Stderr    string  `json:"stderr"`
	Tmp       string  `json:"tmp"`
	OpenFiles int     `json:"openFiles"`
}

// FileSummary is one file of the capsule. Listed is false for a file that
// cell.yaml's files does not list (Verify refuses such a capsule).
type FileSummary struct {
	Path   string          `json:"path"`
	Size   int64           `json:"size"`
	Digest manifest.Digest `json:"digest"`
	Mode   string          `json:"mode"`
	Listed bool            `json:"listed"`
}

// Inspect summarizes the capsule and verifies it against trust (nil:
// verification is skipped). It fails only if cell.yaml does not parse; a
// capsule that does not verify is summarized with Verified false and the
// reason in Problem.
func Inspect(c *Capsule, trust note.Verifiers) (*Summary, error) {
	m, err := c.Manifest()
	if err != nil {
		return nil, err
	}
	l := m.Limits
	s := &Summary{
		Identity:    m.Identity(),
		Name:        m.Name,
		Title:       m.Title,
		Description: m.Description,
		Parent:      m.Parent,
		Signers:     []string{},
		Entrypoint:  m.Entrypoint,
		Args:        m.Args,
		Phase:       m.Phase,
		Annotations: m.Annotations,
		Limits: LimitsSummary{
			Memory: l.Memory.String(), Pids: l.Pids, CPU: float64(l.CPU), Wall: l.Wall.String(),
			Input: l.Input.String(), Output: l.Output.String(), Stderr: l.Stderr.String(),
			Tmp: l.Tmp.String(), OpenFiles: l.OpenFiles,
		},
		Syscalls:       m.Syscalls,
		Filesystem:     m.Filesystem,
		Network:        m.Network,
		Nondeterminism: m.Nondeterminism,
		Monitor:        m.Monitor,
		Examples:       len(m.Examples),
		Files:          []FileSummary{},
	}
	for _, f := range c.Files() {
		_, listed := m.Files[f.Path]
		s.Files = append(s.Files, FileSummary{Path: f.Path, Size: f.Size, Digest: f.Digest, Mode: f.Mode.String(), Listed: listed})
	}

	if trust == nil {
		s.Problem = "not verified: no trust file given"
	} else if v, err := Verify(c, trust); err != nil {
		s.Problem = verifyProblem(err)
	} else {
		s.Verified, s.Signers = true, v.Signers
		return s, nil
	}
	if c.sig != nil {
		var unverified *note.UnverifiedNoteError
		if _, err := note.Open(c.sig, note.VerifierList()); errors.As(err, &unverified) {
			for _, sig := range unverified.Note.UnverifiedSigs {
				s.Signers = append(s.Signers, sig.Name)
			}
		}
	}
	return s, nil
}

// verifyProblem is the error without the "capsule PATH: " prefix, which the
// summary already implies.
func verifyProblem(err error) string {
	var e *Error
	if errors.As(err, &e) {
		short := *e
		short.Capsule = ""
		msg := short.Error()
		return msg[len("capsule: "):]
	}
	return err.Error()
}
