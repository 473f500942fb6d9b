package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// makeRootfs mounts a fresh, small tmpfs at dir and creates in it the mount
// points of the cell's view: /cell and the files under it, /tmp, /dev and
// its nodes, /proc. Nothing else is ever in it, and the sandbox sees it
// read-only (configs.Readonlyfs). It then binds each File's open Source on
// its mount point (bindFile).
//
// The tmpfs is nosuid, nodev and noexec: what the cell executes comes from
// its own bind mounts, whose flags are their own. It is made private so that
// mounts on it never propagate anywhere.
//
// dir exists already; the caller removes it (and its mounts) on error.
func makeRootfs(dir string, s *Spec) error {
	// One inode per directory and file made below, however deep the
	// paths, plus a margin for the root and the tmpfs itself.
	entries := map[string]bool{}
	for _, f := range s.Files {
		for p := path.Join("cell", f.Path); p != "."; p = path.Dir(p) {
			entries[p] = true
		}
	}
	inodes := 16 + len(entries) + len(s.Devices)
	data := fmt.Sprintf("size=16k,nr_inodes=%d,mode=0755", inodes)
	if err := mount("tcc-rootfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return err
	}
	if err := mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	mk := func(rel string, file bool) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if !file {
			return os.Mkdir(p, 0o755)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
		if err != nil {
			return err
		}
		return f.Close()
	}
	if err := mk("cell", false); err != nil {
		return err
	}
	for _, f := range s.Files {
		if err := mk(filepath.Join("cell", f.Path), true); err != nil {
			return err
		}
	}
	if s.Tmp > 0 {
		if err := mk("tmp", false); err != nil {
			return err
		}
	}
	// /dev and /proc always exist while runc init sets up the sandbox
	// (see libcontainerConfig); Prepare removes the undeclared ones.
	for _, d := range []string{"dev", "proc"} {
		if err := mk(d, false); err != nil {
			return err
		}
	}
	for _, d := range s.Devices {
		if err := mk(filepath.Join("dev", d), true); err != nil {
			return err
		}
	}
	for _, f := range s.Files {
		if err := bindFile(f, filepath.Join(dir, "cell", f.Path)); err != nil {
			return err
		}
	}
	return nil
}

// bindFile mounts f's open Source at target: read-only, nosuid, nodev,
// noatime (reads by one call leave no trace another can see), and noexec
// unless f is Exec. It binds the open file itself, through open_tree, so
// that what the sandbox shows is what the caller opened and checked, even if
// the host path names another file by now. (libcontainer cannot do this: it
// binds by path, and a /proc/PID/fd path resolves to a mount outside the
// sandbox's mount namespace, which the kernel refuses to bind.) In a user
// namespace these flags are then locked.
func bindFile(f File, target string) error {
	fd, err := unix.OpenTree(int(f.Source.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return &os.PathError{Op: "open_tree", Path: f.Source.Name(), Err: err}
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOATIME,
		Attr_clr: unix.MOUNT_ATTR__ATIME}
	if !f.Exec {
		attr.Attr_set |= unix.MOUNT_ATTR_NOEXEC
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return &os.PathError{Op: "mount_setattr", Path: f.Source.Name(), Err: err}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount", Path: target, Err: err}
	}
	return nil
}

// removeRootfs unmounts everything at or under dir (lazily: a mount still
// referenced elsewhere goes when its last user does) and removes dir.
func removeRootfs(dir string) error {
	var errs []error
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		errs = append(errs, err)
	}
	// Deepest first.
	slices.SortFunc(mounts, func(a, b *mountinfo.Info) int { return len(b.Mountpoint) - len(a.Mountpoint) })
	for _, m := range mounts {
		if err := unmount(m.Mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or under dir.
func mountsUnder(dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return []string{"mountinfo: " + err.Error()}
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	for {
		err := unix.Mount(source, target, fstype, flags, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "mount " + fstype, Path: target, Err: err}
		}
		return nil
	}
}

func unmount(target string) error {
	for {
		err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch err {
		case nil, unix.EINVAL, unix.ENOENT: // not (or no longer) a mount point
			return nil
		case unix.EINTR:
			continue
		}
		return &os.PathError{Op: "umount", Path: target, Err: err}
	}
}

// hideUndeclared removes, from the host side, the mount points of the
// rootfs that only runc init needed: /dev when no node was declared, /proc
// when the spec has no Proc. Each is a mount point in the sandbox's mount
// namespace only, so the kernel lets the host remove it and detaches the
// sandbox's mount on it (Linux 3.18). It must run after runc init has
// finished with them: after Start, before Launch.
func hideUndeclared(dir string, s *Spec) error {
	var names []string
	if len(s.Devices) == 0 {
		names = append(names, "dev")
	}
	if !s.Proc {
		names = append(names, "proc")
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	return nil
}
