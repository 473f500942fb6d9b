// Command sha256 is an example cell: it hashes UTF-8 text or base64-encoded
// bytes with SHA-256. It reads nothing but stdin and writes nothing but
// stdout (or one error line on stderr).
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/trustcells/tcc/cells/cellio"
)

// Input carries exactly one of Text and Base64; the manifest's schema says
// so with oneOf, and run checks it again.
type Input struct {
	Text   *string `json:"text"`
	Base64 *string `json:"base64"`
}

// Output is the digest in lower-case hex and the number of bytes hashed.
type Output struct {
	SHA256 string `json:"sha256"`
	Bytes  int    `json:"bytes"`
}

var errOneOf = errors.New(`input needs exactly one of "text" (UTF-8 string) or "base64" (standard base64 bytes)`)

func run(in Input, _ *cellio.Progress) (Output, error) {
	var data []byte
	switch {
	case in.Text != nil && in.Base64 == nil:
		data = []byte(*in.Text)
	case in.Base64 != nil && in.Text == nil:
		b, err := decodeBase64(*in.Base64)
		if err != nil {
			return Output{}, err
		}
		data = b
	default:
		return Output{}, errOneOf
	}
	sum := sha256.Sum256(data)
	return Output{SHA256: hex.EncodeToString(sum[:]), Bytes: len(data)}, nil
}

// decodeBase64 decodes standard padded base64 and explains a failure in
// terms a caller can act on.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return b, nil
	}
	if n := len(s); n%4 != 0 {
		return nil, fmt.Errorf("input.base64 is not valid base64: its length %d is not a multiple of 4; add the '=' padding", n)
	}
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		return nil, fmt.Errorf("input.base64 is not valid base64 near byte %d: use the standard alphabet (A-Z a-z 0-9 + /) with '=' padding, no line breaks", int64(ce))
	}
	return nil, fmt.Errorf("input.base64 is not valid base64: %w", err)
}

func main() { cellio.Main("sha256", run) }
