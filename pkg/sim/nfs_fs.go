package sim

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	billy "github.com/go-git/go-billy/v5"
)

// shareFS is a share's directory as its NFS clients see it: each call acts
// for its caller (who, after root squash, nfs_auth.go). What a caller
// creates is theirs (the directory's group when it is setgid); creating,
// removing and renaming need write and search permission on the directory,
// opening needs the file's read or write permission; only root changes a
// file's owner, and only the owner (or root) its mode, times or group, to
// a group of theirs. Searching directories on the way is not checked.
type shareFS struct {
	billy.Filesystem
	who func() nfsUser
}

const (
	permR = 4
	permW = 2
	permX = 1
)

func (c shareFS) path(name string) string { return filepath.Join(c.Root(), name) }

// owner is a file's mode bits, uid and gid.
func owner(p string) (perm, uid, gid uint32, err error) {
	info, err := os.Lstat(p)
	if err != nil {
		return 0, 0, 0, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return uint32(info.Mode().Perm()), 0, 0, nil
	}
	return st.Mode & 0o7777, st.Uid, st.Gid, nil
}

func denied(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// mayIn: u may add or remove names in the directory of name.
func (c shareFS) mayIn(u nfsUser, op, name string) error {
	perm, uid, gid, err := owner(filepath.Dir(c.path(name)))
	if err != nil {
		return err
	}
	if !u.may(perm, uid, gid, permW|permX) {
		return denied(op, name, fs.ErrPermission)
	}
	return nil
}

// made gives a new file to its creator.
func (c shareFS) made(u nfsUser, name string) error {
	p := c.path(name)
	gid := u.gid
	if perm, _, dgid, err := owner(filepath.Dir(p)); err == nil && perm&0o2000 != 0 {
		gid = dgid
	}
	return os.Lchown(p, int(u.uid), int(gid))
}

func (c shareFS) Create(name string) (billy.File, error) {
	return c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (c shareFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	u := c.who()
	fperm, uid, gid, err := owner(c.path(name))
	switch {
	case err == nil:
		want := uint32(permR)
		switch {
		case flag&os.O_WRONLY != 0:
			want = permW
		case flag&os.O_RDWR != 0:
			want = permR | permW
		}
		if flag&(os.O_TRUNC|os.O_APPEND) != 0 {
			want |= permW
		}
		if !u.may(fperm, uid, gid, want) {
			return nil, denied("open", name, fs.ErrPermission)
		}
		return c.Filesystem.OpenFile(name, flag, perm)
	case os.IsNotExist(err) && flag&os.O_CREATE != 0:
		if err := c.mayIn(u, "create", name); err != nil {
			return nil, err
		}
		f, err := c.Filesystem.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		if err := c.made(u, name); err != nil {
			_ = f.Close()
			return nil, err
		}
		return f, nil
	}
	return c.Filesystem.OpenFile(name, flag, perm)
}

func (c shareFS) MkdirAll(name string, perm os.FileMode) error {
	if _, err := os.Lstat(c.path(name)); err == nil {
		return c.Filesystem.MkdirAll(name, perm)
	}
	u := c.who()
	if err := c.mayIn(u, "mkdir", name); err != nil {
		return err
	}
	if err := c.Filesystem.MkdirAll(name, perm); err != nil {
		return err
	}
	return c.made(u, name)
}

func (c shareFS) Symlink(target, link string) error {
	u := c.who()
	if err := c.mayIn(u, "symlink", link); err != nil {
		return err
	}
	if err := c.Filesystem.Symlink(target, link); err != nil {
		return err
	}
	return c.made(u, link)
}

func (c shareFS) Remove(name string) error {
	if err := c.mayIn(c.who(), "remove", name); err != nil {
		return err
	}
	return c.Filesystem.Remove(name)
}

func (c shareFS) Rename(from, to string) error {
	u := c.who()
	if err := c.mayIn(u, "rename", from); err != nil {
		return err
	}
	if err := c.mayIn(u, "rename", to); err != nil {
		return err
	}
	return c.Filesystem.Rename(from, to)
}

// ownerOrRoot: only the file's owner or root may change its attributes.
func (c shareFS) ownerOrRoot(u nfsUser, op, name string) (uid, gid uint32, err error) {
	_, uid, gid, err = owner(c.path(name))
	if err != nil {
		return 0, 0, err
	}
	if !u.root() && u.uid != uid {
		return 0, 0, denied(op, name, fs.ErrPermission)
	}
	return uid, gid, nil
}

func (c shareFS) Chmod(name string, mode os.FileMode) error {
	if _, _, err := c.ownerOrRoot(c.who(), "chmod", name); err != nil {
		return err
	}
	return os.Chmod(c.path(name), mode)
}

func (c shareFS) Lchown(name string, uid, gid int) error {
	return c.chown(name, uid, gid, os.Lchown)
}

func (c shareFS) Chown(name string, uid, gid int) error {
	return c.chown(name, uid, gid, os.Chown)
}

func (c shareFS) chown(name string, uid, gid int, do func(string, int, int) error) error {
	u := c.who()
	fuid, fgid, err := c.ownerOrRoot(u, "chown", name)
	if err != nil {
		return err
	}
	if !u.root() {
		if uid != -1 && uint32(uid) != fuid { //nolint:gosec // an id
			return denied("chown", name, fs.ErrPermission)
		}
		if gid != -1 && uint32(gid) != fgid && !u.inGroup(uint32(gid)) { //nolint:gosec // an id
			return denied("chown", name, fs.ErrPermission)
		}
	}
	return do(c.path(name), uid, gid)
}

func (c shareFS) Chtimes(name string, atime, mtime time.Time) error {
	u := c.who()
	if _, _, err := c.ownerOrRoot(u, "chtimes", name); err != nil {
		perm, uid, gid, serr := owner(c.path(name))
		if serr != nil || !u.may(perm, uid, gid, permW) {
			return err
		}
	}
	return os.Chtimes(c.path(name), atime, mtime)
}
