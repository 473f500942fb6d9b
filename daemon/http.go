package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/trustcells/tcc/daemon/api"
)

// Log field names used across the daemon.
const (
	logCaller   = "caller"
	logCell     = "cell"
	logErr      = "err"
	logIdentity = "identity"
	logPath     = "path"
	logSeq      = "seq"
	logTenant   = "tenant"
	logTrace    = "trace_id"
)

// httpError is an error with the HTTP status and API code to answer with.
type httpError struct {
	status int
	code   api.Code
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, api.CodeBadRequest, fmt.Errorf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &httpError{http.StatusForbidden, api.CodeForbidden, fmt.Errorf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &httpError{http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Errorf(format, args...)}
}

// handler is an HTTP handler that returns its error; errors become JSON
// api.Error answers with a status that fits.
type handler func(w http.ResponseWriter, r *http.Request, c caller) error

func (d *Daemon) handle(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := d.authenticate(r) // auth.go
		if err != nil {
			d.refuseAuth(w, r, err)
			return
		}
		if err := h(w, r, c); err != nil {
			status, code := d.classify(err)
			lvl := slog.LevelInfo
			if status >= 500 && status != http.StatusServiceUnavailable {
				lvl = slog.LevelError
			}
			msg := err.Error()
			if status == http.StatusInternalServerError && !c.Admin {
				// The details (paths, store errors) are for the log and
				// the admins, not for whoever asked.
				msg = "internal error in tccd (its log has the details); if it persists, report it"
			}
			d.log.Log(r.Context(), lvl, "request refused", "method", r.Method, logPath, r.URL.Path, logCaller, c.ID, "status", status, logErr, err)
			writeJSON(w, status, &api.Error{Code: code, Message: msg})
		}
	}
}

// admin wraps h so that only admins reach it.
func admin(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, c caller) error {
		if !c.Admin {
			return forbidden("%s %s is for admins (root or the admin group); you are %s", r.Method, r.URL.Path, c.ID)
		}
		return h(w, r, c)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decodeJSON reads a JSON request body of at most limit bytes, strictly.
func decodeJSON(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: more than one JSON value")
	}
	return nil
}

// bodyTimeout bounds the time a client may take to send a request body,
// so that a slow sender cannot hold a handler (and its memory) open. It is
// set per request, never on the server: a server-wide ReadTimeout would
// also cut long answers (followed event streams, long calls, MCP streams).
const bodyTimeout = time.Minute

// limitedBody wraps r.Body in the read deadline and limit of readBody;
// afterBody clears the deadline.
func limitedBody(w http.ResponseWriter, r *http.Request, limit int64) (io.Reader, func()) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	// The deadline must not outlive the body: net/http's background read
	// of a finished request would hit it and cancel the request.
	return http.MaxBytesReader(w, r.Body, limit), func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// readBody reads a whole request body of at most limit bytes within
// bodyTimeout; a larger one is answered with tooBig().
func readBody(w http.ResponseWriter, r *http.Request, limit int64, tooBig func() error) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, tooBig()
	}
	body, done := limitedBody(w, r, limit)
	b, err := io.ReadAll(body)
	done()
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooBig()
	case err != nil:
		return nil, badRequest("reading the request body: %v", err)
	}
	return b, nil
}

// maxBodiesInFlight caps the bytes of run inputs tccd holds at once, from
// the first byte read until the call has ended: every caller together
// cannot make it buffer more.
const maxBodiesInFlight = 512 << 20

// bodyBudget counts the bytes of run inputs held in flight.
type bodyBudget struct{ n atomic.Int64 }

// take reserves n bytes; false if that would pass maxBodiesInFlight.
func (b *bodyBudget) take(n int64) bool {
	if b.n.Add(n) > maxBodiesInFlight {
		b.n.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) give(n int64) { b.n.Add(-n) }
