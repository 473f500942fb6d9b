package capsule

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// IgnoreFile, at the root of a capsule directory, lists what in the
// directory is not part of the capsule, so that a cell's source directory
// can be packed as it is: one pattern per line (path.Match syntax), blank
// lines and '#' comments ignored. A pattern without a slash matches a name
// at any depth; one with a slash matches a path from the root. A matched
// directory is skipped whole. Ignored files are never read, hashed, listed,
// tarred or mounted. Tar capsules hold only capsule files and have none.
const IgnoreFile = ".cellignore"

// maxIgnoreSize bounds the ignore file.
const maxIgnoreSize = 64 << 10

type ignorer []string

func readIgnore(root *os.Root) (ignorer, error) {
	b, err := root.ReadFile(IgnoreFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > maxIgnoreSize {
		return nil, fmt.Errorf("larger than %d bytes", maxIgnoreSize)
	}
	var ig ignorer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		pat := strings.TrimSpace(sc.Text())
		if pat == "" || strings.HasPrefix(pat, "#") {
			continue
		}
		pat = strings.TrimPrefix(strings.TrimSuffix(pat, "/"), "/")
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("line %d: bad pattern %q: %w", n, pat, err)
		}
		ig = append(ig, pat)
	}
	return ig, nil
}

// match reports whether the capsule path p is ignored.
func (ig ignorer) match(p string) bool {
	for _, pat := range ig {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
		if !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}
