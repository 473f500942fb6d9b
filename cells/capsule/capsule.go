package capsule

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/trustcells/tcc/cells/manifest"
)

const (
	// ManifestFile and SignatureFile are the reserved names at the root of
	// a capsule.
	ManifestFile  = manifest.ManifestFile
	SignatureFile = manifest.SignatureFile

	// MaxTotalSize caps the bytes of all files of a capsule together.
	MaxTotalSize = 256 << 20
	// MaxEntries caps the number of entries (files and directories).
	MaxEntries = 4096
	// MaxSignatureSize caps cell.sig.
	MaxSignatureSize = 64 << 10
)

// Format is how a capsule is stored.
type Format int

const (
	FormatDir     Format = iota // a directory
	FormatTar                   // a plain tar file
	FormatTarGzip               // a gzip-compressed tar file
)

func (f Format) String() string {
	switch f {
	case FormatDir:
		return "directory"
	case FormatTar:
		return "tar"
	case FormatTarGzip:
		return "tar.gz"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Capsule is a capsule read into memory.
type Capsule struct {
	path   string
	format Format
	raw    []byte // cell.yaml
	sig    []byte // cell.sig, nil when absent
	files  map[string]*entry

	// The manifest, parsed once; mErr is why it did not parse.
	m    *manifest.Manifest
	mErr error
}

type entry struct {
	data   []byte
	perm   fs.FileMode // as found: on disk or in the tar header
	digest manifest.Digest
}

// File is one file of a capsule other than cell.yaml and cell.sig.
type File struct {
	Path   string          // capsule path, e.g. "sha256" or "data/rules.json"
	Digest manifest.Digest // SHA-256 of the content
	Size   int64
	// Mode is 0755 for the manifest's entrypoint and 0644 for everything
	// else. Modes are not covered by the identity, so they are derived, not
	// taken from the capsule.
	Mode fs.FileMode
	data []byte
}

// Open returns a reader of the file's content.
func (f File) Open() io.Reader { return bytes.NewReader(f.data) }

// Path is where the capsule was opened from.
func (c *Capsule) Path() string { return c.path }

// Format is how the capsule is stored.
func (c *Capsule) Format() Format { return c.format }

// ManifestBytes is cell.yaml as stored.
func (c *Capsule) ManifestBytes() []byte { return c.raw }

// Signature is cell.sig as stored, or nil.
func (c *Capsule) Signature() []byte { return c.sig }

// Manifest is the parsed cell.yaml. It does not check the files; Verify does.
func (c *Capsule) Manifest() (*manifest.Manifest, error) {
	if c.mErr != nil {
		return nil, &Error{Capsule: c.path, File: ManifestFile, Err: ErrInvalidManifest, Msg: ManifestFile, Cause: c.mErr}
	}
	return c.m, nil
}

// Files lists the capsule's files other than cell.yaml and cell.sig,
// sorted by path.
func (c *Capsule) Files() []File {
	entrypoint := ""
	if c.m != nil {
		entrypoint = c.m.Entrypoint
	}
	out := make([]File, 0, len(c.files))
	for _, p := range slices.Sorted(maps.Keys(c.files)) {
		e := c.files[p]
		mode := fs.FileMode(0o644)
		if p == entrypoint {
			mode = 0o755
		}
		out = append(out, File{Path: p, Digest: e.digest, Size: int64(len(e.data)), Mode: mode, data: e.data})
	}
	return out
}

// Open reads the capsule at path: a directory, or a tar file, plain or
// gzip-compressed (told apart by its first bytes). It reads everything into
// memory within MaxTotalSize and MaxEntries and refuses any entry that is
// not a regular file or directory at a clean path inside the capsule.
func Open(path string) (*Capsule, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Capsule: path, Err: ErrNotCapsule, Msg: "cannot open", Cause: err}
	}
	r := newReader(path)
	if fi.IsDir() {
		r.c.format = FormatDir
		err = r.readDir(path)
	} else {
		err = r.readTarFile(path)
	}
	if err != nil {
		return nil, err
	}
	return r.finish()
}

// ReadTar reads a capsule tar, plain or gzip-compressed, from src, with the
// caps and refusals of Open; errors name the capsule name (e.g. "upload").
// The daemon reads uploads this way, straight from the request.
func ReadTar(src io.Reader, name string) (*Capsule, error) {
	r := newReader(name)
	if err := r.readTarStream(src); err != nil {
		return nil, err
	}
	return r.finish()
}

func newReader(name string) *reader {
	return &reader{c: &Capsule{path: name, files: map[string]*entry{}}, dirs: map[string]bool{}}
}

// finish checks that a manifest was read and parses it.
func (r *reader) finish() (*Capsule, error) {
	c := r.c
	if c.raw == nil {
		return nil, newError(c.path, ErrMissingFile, "no %s at the root; a capsule starts with its manifest", ManifestFile)
	}
	c.m, c.mErr = manifest.Parse(c.raw)
	return c, nil
}

// reader gathers entries, enforcing the caps and path rules shared by the
// directory and tar forms.
type reader struct {
	c       *Capsule
	total   int64
	entries int
	dirs    map[string]bool
}

// checkPath validates an entry name and returns it normalized.
func (r *reader) checkPath(name string) (string, error) {
	p := strings.TrimPrefix(name, "./")
	switch {
	case p == "" || p == ".":
		return "", newError(r.c.path, ErrUnsafePath, "entry with an empty name")
	case strings.HasPrefix(p, "/"):
		return "", fileError(r.c.path, name, ErrUnsafePath, "%q is an absolute path; capsule paths are relative", name)
	case slices.Contains(strings.Split(p, "/"), ".."):
		return "", fileError(r.c.path, name, ErrUnsafePath, "%q escapes the capsule (\"..\")", name)
	case path.Clean(p) != p:
		return "", fileError(r.c.path, name, ErrUnsafePath, "%q is not a clean path", name)
	case strings.ContainsRune(p, 0):
		return "", fileError(r.c.path, name, ErrUnsafePath, "%q contains a NUL byte", name)
	}
	return p, nil
}

func (r *reader) count(name string) error {
	r.entries++
	if r.entries > MaxEntries {
		return fileError(r.c.path, name, ErrTooLarge, "more than %d entries, the limit", MaxEntries)
	}
	return nil
}

func (r *reader) addDir(p string) error {
	if _, ok := r.c.files[p]; ok || p == ManifestFile || p == SignatureFile {
		return fileError(r.c.path, p, ErrUnsafePath, "%q is both a file and a directory", p)
	}
	r.dirs[p] = true
	return nil
}

// addFile records a regular file whose content is read from src, which
// yields at most size bytes.
func (r *reader) addFile(p string, perm fs.FileMode, size int64, src io.Reader) error {
	if r.dirs[p] {
		return fileError(r.c.path, p, ErrUnsafePath, "%q is both a file and a directory", p)
	}
	if _, dup := r.c.files[p]; dup || (p == ManifestFile && r.c.raw != nil) || (p == SignatureFile && r.c.sig != nil) {
		return fileError(r.c.path, p, ErrUnsafePath, "%q appears twice", p)
	}
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if _, ok := r.c.files[dir]; ok {
			return fileError(r.c.path, p, ErrUnsafePath, "%q is both a file and a directory", dir)
		}
		r.dirs[dir] = true
	}
	if size < 0 || size > MaxTotalSize-r.total {
		return fileError(r.c.path, p, ErrTooLarge, "%q takes the capsule over %s", p, manifest.Size(MaxTotalSize))
	}
	switch {
	case p == ManifestFile && size > manifest.MaxSize:
		return fileError(r.c.path, p, ErrTooLarge, "%s is larger than %s", p, manifest.Size(manifest.MaxSize))
	case p == SignatureFile && size > MaxSignatureSize:
		return fileError(r.c.path, p, ErrTooLarge, "%s is larger than %s", p, manifest.Size(MaxSignatureSize))
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(src, data); err != nil {
		return &Error{Capsule: r.c.path, File: p, Err: ErrNotCapsule, Msg: fmt.Sprintf("reading %q", p), Cause: err}
	}
	// A file that grew while we read it is refused, not truncated.
	if n, _ := src.Read(make([]byte, 1)); n > 0 {
		return fileError(r.c.path, p, ErrNotCapsule, "%q changed while it was read", p)
	}
	r.total += size
	switch p {
	case ManifestFile:
		r.c.raw = data
	case SignatureFile:
		r.c.sig = data
	default:
		r.c.files[p] = &entry{data: data, perm: perm.Perm(), digest: manifest.DigestOf(data)}
	}
	return nil
}

// readDir walks a directory capsule without following symlinks; the root
// may be a symlink (the user named it), nothing inside it may.
func (r *reader) readDir(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return &Error{Capsule: dir, Err: ErrNotCapsule, Msg: "cannot open", Cause: err}
	}
	defer root.Close()
	ignore, err := readIgnore(root)
	if err != nil {
		return &Error{Capsule: dir, File: IgnoreFile, Err: ErrNotCapsule, Msg: IgnoreFile, Cause: err}
	}
	return fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return &Error{Capsule: dir, File: name, Err: ErrNotCapsule, Msg: fmt.Sprintf("reading %q", name), Cause: err}
		}
		if name == "." {
			return nil
		}
		if name == IgnoreFile || ignore.match(name) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if err := r.count(name); err != nil {
			return err
		}
		p, err := r.checkPath(name)
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			return fileError(dir, p, ErrUnsafePath, "%q is a symlink; a capsule holds regular files only", p)
		case t.IsDir():
			return r.addDir(p)
		case !t.IsRegular():
			return fileError(dir, p, ErrUnsafePath, "%q is a %s; a capsule holds regular files only", p, kind(t))
		}
		info, err := d.Info()
		if err != nil {
			return &Error{Capsule: dir, File: p, Err: ErrNotCapsule, Msg: fmt.Sprintf("reading %q", p), Cause: err}
		}
		// O_NOFOLLOW and O_NONBLOCK: if the file is swapped for a symlink or
		// a fifo after the walk saw it, fail instead of following or blocking.
		f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return &Error{Capsule: dir, File: p, Err: ErrUnsafePath, Msg: fmt.Sprintf("opening %q", p), Cause: err}
		}
		defer f.Close()
		opened, err := f.Stat()
		if err != nil || !opened.Mode().IsRegular() || !os.SameFile(info, opened) {
			return fileError(dir, p, ErrUnsafePath, "%q changed while the capsule was read", p)
		}
		return r.addFile(p, opened.Mode(), opened.Size(), bufio.NewReader(f))
	})
}

func kind(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	case t&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

func (r *reader) readTarFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return &Error{Capsule: name, Err: ErrNotCapsule, Msg: "cannot open", Cause: err}
	}
	defer f.Close()
	return r.readTarStream(f)
}

// readTarStream reads a tar, gunzipping it first if it starts with the
// gzip magic.
func (r *reader) readTarStream(in io.Reader) error {
	br := bufio.NewReader(in)
	var src io.Reader = br
	r.c.format = FormatTar
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return &Error{Capsule: r.c.path, Err: ErrNotCapsule, Msg: "bad gzip data", Cause: err}
		}
		defer zr.Close()
		zr.Multistream(false)
		src = zr
		r.c.format = FormatTarGzip
	}
	return r.readTar(src)
}

func (r *reader) readTar(src io.Reader) error {
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if r.entries == 0 {
				return newError(r.c.path, ErrNotCapsule, "empty tar archive")
			}
			return nil
		}
		if err != nil {
			return &Error{Capsule: r.c.path, Err: ErrNotCapsule, Msg: "not a directory or a tar archive", Cause: err}
		}
		if err := r.count(h.Name); err != nil {
			return err
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
			if name == "." || name == "" {
				continue
			}
		}
		p, err := r.checkPath(name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if err := r.addFile(p, fs.FileMode(h.Mode), h.Size, tr); err != nil {
				return err
			}
		case tar.TypeDir:
			if err := r.addDir(p); err != nil {
				return err
			}
		case tar.TypeSymlink:
			return fileError(r.c.path, p, ErrUnsafePath, "%q is a symlink (to %q); a capsule holds regular files only", p, h.Linkname)
		case tar.TypeLink:
			return fileError(r.c.path, p, ErrUnsafePath, "%q is a hard link (to %q); a capsule holds regular files only", p, h.Linkname)
		case tar.TypeChar, tar.TypeBlock:
			return fileError(r.c.path, p, ErrUnsafePath, "%q is a device; a capsule holds regular files only", p)
		case tar.TypeFifo:
			return fileError(r.c.path, p, ErrUnsafePath, "%q is a fifo; a capsule holds regular files only", p)
		default:
			return fileError(r.c.path, p, ErrUnsafePath, "%q has tar entry type %q, which a capsule may not hold", p, h.Typeflag)
		}
	}
}

// unixEpoch is the modification time of every entry WriteTar writes.
var unixEpoch = time.Unix(0, 0)

// WriteTar writes the capsule as a deterministic tar: entries sorted by
// path, no directories, mtime 0, uid and gid 0, no user or group names,
// mode 0755 for the entrypoint and 0644 for everything else.
func WriteTar(c *Capsule, w io.Writer) error {
	type item struct {
		name string
		data []byte
		mode int64
	}
	items := []item{{ManifestFile, c.raw, 0o644}}
	if c.sig != nil {
		items = append(items, item{SignatureFile, c.sig, 0o644})
	}
	for _, f := range c.Files() {
		items = append(items, item{f.Path, f.data, int64(f.Mode)})
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.name, b.name) })
	tw := tar.NewWriter(w)
	for _, it := range items {
		h := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     it.name,
			Mode:     it.mode,
			Size:     int64(len(it.data)),
			ModTime:  unixEpoch,
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write tar: %s: %w", it.name, err)
		}
		if _, err := tw.Write(it.data); err != nil {
			return fmt.Errorf("write tar: %s: %w", it.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write tar: %w", err)
	}
	return nil
}
