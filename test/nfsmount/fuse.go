package nfsmount

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs"
	"golang.org/x/sys/unix"
)

// The FUSE side: each file, directory or symlink of the share is a node
// holding its NFS file handle. Nothing is cached: the mount has zero
// entry, attribute and negative timeouts and opens every file with
// FOPEN_DIRECT_IO, so each stat, read and write goes to the server and
// two mounts of one share see each other's changes at once.

// blockSize is the st_blksize reported, and the largest FUSE request.
const blockSize = 1 << 20

type node struct {
	fs.Inode
	s *session

	mu sync.Mutex
	fh []byte // nil for the root, whose handle is the session's
}

var (
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeReader     = (*node)(nil)
	_ fs.NodeWriter     = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
	_ fs.NodeFlusher    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeAccesser   = (*node)(nil)
)

// openFile is an open file: only its open flags matter.
type openFile struct{ flags uint32 }

func (n *node) handle() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fh == nil {
		return n.s.rootHandle()
	}
	return n.fh
}

func (n *node) setHandle(fh []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fh != nil {
		n.fh = fh
	}
}

// isStale reports whether an error may mean the handle names nothing any
// more: go-nfs's handles name paths, so a rename (here or by another
// client) leaves ENOENT where a real server would still answer.
func isStale(err error) bool {
	e := toErrno(err)
	return e == syscall.ESTALE || e == syscall.ENOENT
}

// withHandle runs op on n's handle and, if the handle went stale, once
// more on a handle found anew by n's path.
func (n *node) withHandle(ctx context.Context, op func(fh []byte) error) error {
	err := op(n.handle())
	if err == nil || !isStale(err) {
		return err
	}
	fh, rerr := n.refresh(ctx)
	if rerr != nil {
		return err
	}
	return op(fh)
}

// withDir is withHandle for operations on a name in directory n, where
// ENOENT is usually about the name: it retries only if n's own handle
// turns out stale.
func (n *node) withDir(ctx context.Context, op func(dir []byte) error) error {
	dir := n.handle()
	err := op(dir)
	if err == nil || !isStale(err) {
		return err
	}
	if toErrno(err) == syscall.ENOENT {
		if _, gerr := n.s.getattr(ctx, dir); gerr == nil || !isStale(gerr) {
			return err
		}
	}
	fh, rerr := n.refresh(ctx)
	if rerr != nil {
		return err
	}
	return op(fh)
}

// refresh looks n up again from the root, by the path the kernel knows.
func (n *node) refresh(ctx context.Context) ([]byte, error) {
	fh := n.s.rootHandle()
	if n.IsRoot() {
		return fh, nil
	}
	for _, name := range strings.Split(n.Path(n.Root()), "/") {
		if name == "" {
			continue
		}
		var err error
		if fh, _, err = n.s.lookup(ctx, fh, name); err != nil {
			return nil, err
		}
	}
	n.setHandle(fh)
	return fh, nil
}

// child returns the node for name in n, just looked up or created.
func (n *node) child(ctx context.Context, name string, fh []byte, a *nfs.Fattr, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if a == nil {
		var err error
		if a, err = n.s.getattr(ctx, fh); err != nil {
			return nil, toErrno(err)
		}
	}
	fillAttr(&out.Attr, a)
	id := fs.StableAttr{Mode: fileType(a.Type), Ino: a.Fileid}
	if id.Reserved() {
		id.Ino = 0 // let go-fuse pick one
	}
	// A node the kernel already knows keeps its identity; its handle
	// may have changed (go-nfs's do after a rename).
	if c := n.GetChild(name); c != nil && c.StableAttr() == id {
		if cn, ok := c.Operations().(*node); ok {
			cn.setHandle(fh)
		}
		return c, 0
	}
	return n.NewInode(ctx, &node{s: n.s, fh: fh}, id), 0
}

// made returns the node of a name just created in n.
// makeIn runs op, which makes an object in this directory, with the
// directory's handle (withDir) and returns what it made.
func (n *node) makeIn(ctx context.Context, op func(dir []byte) (newObj, error)) (newObj, error) {
	var res newObj
	err := n.withDir(ctx, func(dir []byte) (err error) {
		res, err = op(dir)
		return err
	})
	return res, err
}

func (n *node) made(ctx context.Context, name string, res newObj, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fh := res.FH.FH
	var a *nfs.Fattr
	if res.Attr.IsSet {
		a = &res.Attr.Attr
	}
	if !res.FH.IsSet {
		var err error
		if fh, a, err = n.s.lookup(ctx, n.handle(), name); err != nil {
			return nil, toErrno(err)
		}
	}
	return n.child(ctx, name, fh, a, out)
}

func (n *node) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var a *nfs.Fattr
	err := n.withHandle(ctx, func(fh []byte) (err error) {
		a, err = n.s.getattr(ctx, fh)
		return err
	})
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a)
	return 0
}

func (n *node) Setattr(ctx context.Context, _ fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var sa nfs.Sattr3
	if m, ok := in.GetMode(); ok {
		sa.Mode = nfs.SetMode{SetIt: true, Mode: m}
	}
	if uid, ok := in.GetUID(); ok {
		sa.UID = nfs.SetUID{SetIt: true, UID: uid}
	}
	if gid, ok := in.GetGID(); ok {
		sa.GID = nfs.SetUID{SetIt: true, UID: gid}
	}
	if size, ok := in.GetSize(); ok {
		sa.Size = nfs.SetSize{SetIt: true, Size: size}
	}
	sa.Atime = setTime(in.Valid, fuse.FATTR_ATIME, fuse.FATTR_ATIME_NOW, in.Atime, in.Atimensec)
	sa.Mtime = setTime(in.Valid, fuse.FATTR_MTIME, fuse.FATTR_MTIME_NOW, in.Mtime, in.Mtimensec)
	var a *nfs.Fattr
	err := n.withHandle(ctx, func(fh []byte) (err error) {
		if a, err = n.s.setattr(ctx, fh, sa); err == nil && a == nil {
			a, err = n.s.getattr(ctx, fh)
		}
		return err
	})
	if err != nil {
		return toErrno(err)
	}
	fillAttr(&out.Attr, a)
	return 0
}

func setTime(valid, set, now uint32, sec uint64, nsec uint32) nfs.SetTime {
	switch {
	case valid&set == 0:
		return nfs.SetTime{SetIt: nfs.DontChange}
	case valid&now != 0:
		return nfs.SetTime{SetIt: nfs.SetToServerTime}
	}
	return nfs.SetTime{SetIt: nfs.SetToClientTime, Time: nfs.NFS3Time{Seconds: uint32(sec), Nseconds: nsec}}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	var fh []byte
	var a *nfs.Fattr
	err := n.withDir(ctx, func(dir []byte) (err error) {
		fh, a, err = n.s.lookup(ctx, dir, name)
		return err
	})
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, name, fh, a, out)
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	var list []dirEntry
	err := n.withHandle(ctx, func(fh []byte) (err error) {
		list, err = n.s.readdir(ctx, fh)
		return err
	})
	if err != nil {
		return nil, toErrno(err)
	}
	// "." and ".." come first, as the server's or made up.
	ino := n.StableAttr().Ino
	entries := []fuse.DirEntry{{Name: ".", Ino: ino, Mode: syscall.S_IFDIR}, {Name: "..", Ino: ino, Mode: syscall.S_IFDIR}}
	for _, e := range list {
		switch e.Name {
		case ".":
			entries[0].Ino = e.Fileid
		case "..":
			entries[1].Ino = e.Fileid
		default:
			mode := uint32(syscall.S_IFREG)
			if e.Attr.IsSet {
				mode = fileType(e.Attr.Attr.Type)
			}
			entries = append(entries, fuse.DirEntry{Name: e.Name, Ino: e.Fileid, Mode: mode})
		}
	}
	return fs.NewListDirStream(entries), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	res, err := n.makeIn(ctx, func(dir []byte) (newObj, error) { return n.s.mkdir(ctx, dir, name, mode) })
	if err != nil {
		return nil, toErrno(err)
	}
	return n.made(ctx, name, res, out)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	err := n.withDir(ctx, func(dir []byte) error { return n.s.rmdir(ctx, dir, name) })
	if toErrno(err) == syscall.EIO {
		// go-nfs answers NFS3ERR_IO, not NOTEMPTY, for a directory
		// with files in it: tell that case apart.
		if fh, _, lerr := n.s.lookup(ctx, n.handle(), name); lerr == nil {
			if list, rerr := n.s.readdir(ctx, fh); rerr == nil && slices.ContainsFunc(list, isFile) {
				return syscall.ENOTEMPTY
			}
		}
	}
	return toErrno(err)
}

// isFile: an entry other than "." and "..".
func isFile(e dirEntry) bool { return e.Name != "." && e.Name != ".." }

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return toErrno(n.withDir(ctx, func(dir []byte) error { return n.s.remove(ctx, dir, name) }))
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	res, err := n.makeIn(ctx, func(dir []byte) (newObj, error) { return n.s.create(ctx, dir, name, mode) })
	if toErrno(err) == syscall.EEXIST && flags&syscall.O_EXCL == 0 {
		// Another client made it meanwhile: open that one.
		res, err = n.openExisting(ctx, name, flags)
	}
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	ino, errno := n.made(ctx, name, res, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ino, &openFile{flags: flags}, fuse.FOPEN_DIRECT_IO, 0
}

func (n *node) openExisting(ctx context.Context, name string, flags uint32) (newObj, error) {
	fh, a, err := n.s.lookup(ctx, n.handle(), name)
	if err != nil {
		return newObj{}, err
	}
	if a != nil && a.Type == nfs.NF3Dir {
		return newObj{}, nfsStatus(21) // ISDIR
	}
	if flags&syscall.O_TRUNC != 0 {
		if _, err := n.s.setattr(ctx, fh, nfs.Sattr3{Size: nfs.SetSize{SetIt: true}}); err != nil {
			return newObj{}, err
		}
	}
	return newObj{FH: nfs.PostOpFH3{IsSet: true, FH: fh}}, nil
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &openFile{flags: flags}, fuse.FOPEN_DIRECT_IO, 0
}

func (n *node) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	got := 0
	for got < len(dest) {
		var data []byte
		var eof bool
		count := min(uint32(len(dest)-got), n.s.rtmax)
		err := n.withHandle(ctx, func(fh []byte) (err error) {
			data, eof, err = n.s.read(ctx, fh, uint64(off)+uint64(got), count)
			return err
		})
		if err != nil {
			if got > 0 {
				break
			}
			return nil, toErrno(err)
		}
		got += copy(dest[got:], data)
		if eof || len(data) == 0 {
			break
		}
	}
	return fuse.ReadResultData(dest[:got]), 0
}

func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if of, ok := f.(*openFile); ok && of.flags&syscall.O_APPEND != 0 {
		// Append at the server's end of file, which another client
		// may have moved since the kernel last looked.
		var a *nfs.Fattr
		err := n.withHandle(ctx, func(fh []byte) (err error) {
			a, err = n.s.getattr(ctx, fh)
			return err
		})
		if err != nil {
			return 0, toErrno(err)
		}
		off = int64(a.Filesize)
	}
	done := 0
	for done < len(data) {
		chunk := data[done : done+min(len(data)-done, int(n.s.wtmax))]
		var written uint32
		err := n.withHandle(ctx, func(fh []byte) (err error) {
			written, err = n.s.write(ctx, fh, uint64(off)+uint64(done), chunk)
			return err
		})
		if err != nil || written == 0 {
			if done > 0 {
				break
			}
			if err == nil {
				return 0, syscall.EIO
			}
			return 0, toErrno(err)
		}
		done += int(written)
	}
	return uint32(done), 0
}

// Flush has nothing to do: writes are FILE_SYNC.
func (n *node) Flush(context.Context, fs.FileHandle) syscall.Errno { return 0 }

func (n *node) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	return toErrno(n.withHandle(ctx, func(fh []byte) error { return n.s.commit(ctx, fh) }))
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	if flags&unix.RENAME_NOREPLACE != 0 { // not atomic: NFSv3 has no such rename
		_, _, err := n.s.lookup(ctx, np.handle(), newName)
		if err == nil {
			return syscall.EEXIST
		}
		if toErrno(err) != syscall.ENOENT {
			return toErrno(err)
		}
	}
	err := n.withDir(ctx, func(dir []byte) error { return n.s.rename(ctx, dir, name, np.handle(), newName) })
	if err != nil {
		return toErrno(err)
	}
	// go-nfs's handles name paths: the moved node has a new one.
	if c := n.GetChild(name); c != nil {
		if cn, ok := c.Operations().(*node); ok {
			if fh, _, err := n.s.lookup(ctx, np.handle(), newName); err == nil {
				cn.setHandle(fh)
			}
		}
	}
	return 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	res, err := n.makeIn(ctx, func(dir []byte) (newObj, error) { return n.s.symlink(ctx, dir, name, target) })
	if err != nil {
		return nil, toErrno(err)
	}
	return n.made(ctx, name, res, out)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	var target string
	err := n.withHandle(ctx, func(fh []byte) (err error) {
		target, err = n.s.readlink(ctx, fh)
		return err
	})
	return []byte(target), toErrno(err)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if err := n.s.link(ctx, tn.handle(), n.handle(), name); err != nil {
		return nil, toErrno(err)
	}
	fh, a, err := n.s.lookup(ctx, n.handle(), name)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.child(ctx, name, fh, a, out)
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st, err := n.s.fsstat(ctx, n.s.rootHandle())
	if err != nil {
		return toErrno(err)
	}
	const bsize = 4096
	out.Bsize, out.Frsize, out.NameLen = bsize, bsize, 255
	out.Blocks, out.Bfree, out.Bavail = st.Tbytes/bsize, st.Fbytes/bsize, st.Abytes/bsize
	out.Files, out.Ffree = st.Tfiles, st.Ffiles
	return 0
}

// Access asks the server (default_permissions is off: it decides).
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	var want uint32
	if mask&unix.R_OK != 0 {
		want |= nfs.ACCESS3_READ
	}
	if mask&unix.W_OK != 0 {
		want |= nfs.ACCESS3_MODIFY | nfs.ACCESS3_EXTEND
	}
	if mask&unix.X_OK != 0 {
		want |= nfs.ACCESS3_EXECUTE | nfs.ACCESS3_LOOKUP
	}
	if want == 0 {
		return 0
	}
	var got uint32
	err := n.withHandle(ctx, func(fh []byte) (err error) {
		got, err = n.s.access(ctx, fh, want)
		return err
	})
	switch {
	case err != nil:
		return toErrno(err)
	case mask&unix.R_OK != 0 && got&nfs.ACCESS3_READ == 0,
		mask&unix.W_OK != 0 && got&nfs.ACCESS3_MODIFY == 0,
		mask&unix.X_OK != 0 && got&(nfs.ACCESS3_EXECUTE|nfs.ACCESS3_LOOKUP) == 0:
		return syscall.EACCES
	}
	return 0
}

// fileType is the S_IFMT bits of an NFSv3 file type.
func fileType(t uint32) uint32 {
	switch t {
	case nfs.NF3Dir:
		return syscall.S_IFDIR
	case nfs.NF3Blk:
		return syscall.S_IFBLK
	case nfs.NF3Chr:
		return syscall.S_IFCHR
	case nfs.NF3Lnk:
		return syscall.S_IFLNK
	case nfs.NF3Sock:
		return syscall.S_IFSOCK
	case nfs.NF3FIFO:
		return syscall.S_IFIFO
	}
	return syscall.S_IFREG
}

// permBits is the permission bits of an NFSv3 mode. go-nfs sends Go's
// os.FileMode, whose setuid, setgid and sticky bits are high ones.
func permBits(m uint32) uint32 {
	p := m & 0o7777
	for goBit, unixBit := range map[os.FileMode]uint32{os.ModeSetuid: 0o4000, os.ModeSetgid: 0o2000, os.ModeSticky: 0o1000} {
		if m&uint32(goBit) != 0 {
			p |= unixBit
		}
	}
	return p
}

func fillAttr(out *fuse.Attr, a *nfs.Fattr) {
	out.Ino = a.Fileid
	out.Size = a.Filesize
	out.Blocks = (a.Used + 511) / 512
	out.Mode = fileType(a.Type) | permBits(a.FileMode)
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.UID, a.GID
	out.Rdev = uint32(unix.Mkdev(a.SpecData[0], a.SpecData[1]))
	out.Blksize = blockSize
	atime := time.Unix(int64(a.Atime.Seconds), int64(a.Atime.Nseconds))
	mtime := time.Unix(int64(a.Mtime.Seconds), int64(a.Mtime.Nseconds))
	ctime := time.Unix(int64(a.Ctime.Seconds), int64(a.Ctime.Nseconds))
	out.SetTimes(&atime, &mtime, &ctime)
}
