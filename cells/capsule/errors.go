package capsule

import (
	"errors"
	"fmt"
)

// Sentinels, one per way a capsule is refused. Errors returned by this
// package are *Error values that wrap one of them; use errors.Is.
var (
	ErrNotCapsule       = errors.New("not a capsule")
	ErrTooLarge         = errors.New("capsule too large")
	ErrUnsafePath       = errors.New("unsafe capsule entry")
	ErrInvalidManifest  = errors.New("invalid manifest")
	ErrMissingFile      = errors.New("missing file")
	ErrDigestMismatch   = errors.New("digest mismatch")
	ErrUnlistedFile     = errors.New("unlisted file")
	ErrNotExecutable    = errors.New("entrypoint not executable")
	ErrNotSigned        = errors.New("capsule not signed")
	ErrUntrustedSigner  = errors.New("untrusted signer")
	ErrBadSignature     = errors.New("bad signature")
	ErrWrongDomain      = errors.New("not a cell signature")
	ErrIdentityMismatch = errors.New("signature for another identity")
)

// Error is a refusal of a capsule. It names the capsule and, when there is
// one, the file or signing key concerned.
type Error struct {
	Capsule string // path of the capsule (directory or tar)
	File    string // capsule path of the file concerned, if any
	Key     string // name of the signing key concerned, if any
	Err     error  // one of the sentinels above
	Cause   error  // underlying error, if any (e.g. *manifest.ValidationError)
	Msg     string // what was wrong and what to do
}

func (e *Error) Error() string {
	msg := e.Msg
	if msg == "" {
		msg = e.Err.Error()
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.Capsule == "" {
		return "capsule: " + msg
	}
	return "capsule " + e.Capsule + ": " + msg
}

func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func newError(capsule string, sentinel error, format string, args ...any) *Error {
	return &Error{Capsule: capsule, Err: sentinel, Msg: fmt.Sprintf(format, args...)}
}

func fileError(capsule, file string, sentinel error, format string, args ...any) *Error {
	e := newError(capsule, sentinel, format, args...)
	e.File = file
	return e
}
