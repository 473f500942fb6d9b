package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/trustcells/tcc/daemon/api"
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
			if status >= 500 {
				lvl = slog.LevelError
			}
			d.log.Log(r.Context(), lvl, "request refused", "method", r.Method, "path", r.URL.Path, "caller", c.ID, "status", status, "err", err)
			writeJSON(w, status, &api.Error{Code: code, Message: err.Error()})
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
