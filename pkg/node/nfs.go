package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// NFS mounts: a file volume (a vSAN file share) is mounted straight from
// its NFS server at each target, with no staging and no device.

// NFS filesystem types a file volume is mounted as.
const (
	FSTypeNFS4 = "nfs4"
	FSTypeNFS  = "nfs"
)

// NFSv41Options are the options of an NFSv4.1 mount of a vSAN file share,
// as VMware documents them for vSAN File Service: hard (a server that
// stops answering makes I/O wait, not fail: no silent data loss), AUTH_SYS,
// version 4.1.
var NFSv41Options = []string{"hard", "sec=sys", "vers=4", "minorversion=1"}

// IsNFS says whether fsType is a network filesystem this driver mounts:
// nfs or nfs4, or a FUSE stand-in for them (fuse.nfs4: the test helper).
func IsNFS(fsType string) bool {
	switch strings.TrimPrefix(fsType, "fuse.") {
	case FSTypeNFS, FSTypeNFS4:
		return true
	}
	return false
}

// nfsMountOptions are the options of an NFS mount: NFSv4.1's for nfs4 (the
// capability's mount flags may add to them or override the version), the
// flags alone for nfs, and ro when read-only.
func nfsMountOptions(fsType string, readOnly bool, mountFlags []string) []string {
	mountFlags = splitOptions(mountFlags)
	var opts []string
	if fsType == FSTypeNFS4 {
		for _, o := range NFSv41Options {
			key, _, _ := strings.Cut(o, "=")
			overridden := slices.ContainsFunc(mountFlags, func(f string) bool {
				k, _, _ := strings.Cut(f, "=")
				return k == key || (key == "vers" && k == "nfsvers") || (key == "minorversion" && (k == "vers" || k == "nfsvers"))
			})
			if !overridden {
				opts = append(opts, o)
			}
		}
	}
	for _, f := range mountFlags {
		if f != "ro" && f != "rw" {
			opts = append(opts, f)
		}
	}
	if readOnly || slices.Contains(mountFlags, "ro") {
		opts = append(opts, "ro")
	}
	return opts
}

// splitOptions reads mount flags as mount(8) does: a flag may hold several
// options separated by commas ("nolock,vers=3"); empty ones go.
func splitOptions(flags []string) []string {
	var out []string
	for _, f := range flags {
		for _, o := range strings.Split(f, ",") {
			if o != "" {
				out = append(out, o)
			}
		}
	}
	return out
}

// MountNFS mounts the NFS export source ("server:/path") at target (a
// directory, created when missing) as fsType (nfs4 or nfs), read-only if
// asked, with the capability's mount flags.
func (m *mounter) MountNFS(source, target, fsType string, readOnly bool, mountFlags []string) error {
	if fsType != FSTypeNFS4 && fsType != FSTypeNFS {
		return fmt.Errorf("%w: %q is not nfs4 or nfs", ErrUnsupportedFilesystem, fsType)
	}
	if err := CheckNFSExport(source); err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("creating mount point %s: %w", target, err)
	}
	opts := nfsMountOptions(fsType, readOnly, mountFlags)
	if err := m.mnt.Mount(source, target, fsType, opts); err != nil {
		return fmt.Errorf("mounting %s at %s (%s, %s): %w", source, target, fsType, strings.Join(opts, ","), err)
	}
	return nil
}

// UnmountNFS unmounts what is mounted at target without looking at target
// first: it reads the mount table, since a stat of an NFS mount whose
// server is gone waits (hard) or fails (ENOTCONN, ESTALE, EIO). Each
// unmount is unmountNetwork's, bounded. Then target is removed if asked.
// Nothing mounted at target, or no target: success.
func (m *mounter) UnmountNFS(ctx context.Context, target string, removeTarget bool) error {
	target = filepath.Clean(target)
	for range maxStacked {
		_, mounted, err := m.sys.MountInTable(target)
		if err != nil {
			return fmt.Errorf("reading the mount table for %s: %w", target, err)
		}
		if !mounted {
			if removeTarget {
				if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("removing %s: %w", target, err)
				}
			}
			return nil
		}
		if err := m.unmountNetwork(ctx, target); err != nil {
			return err
		}
	}
	return fmt.Errorf("unmounting %s: still mounted after %d unmounts", target, maxStacked)
}

func (m *mounter) MountEntry(path string) (PathInfo, error) {
	e, ok, err := m.sys.MountInTable(filepath.Clean(path))
	if err != nil {
		return PathInfo{}, fmt.Errorf("reading the mount table for %s: %w", path, err)
	}
	if !ok {
		return PathInfo{}, nil
	}
	return PathInfo{Mounted: true, Source: e.Source, FSType: e.FSType, ReadOnly: e.ReadOnly, FSReadOnly: e.FSReadOnly}, nil
}

// networkUnmounts are the ways unmountNetwork tries, in order: plainly
// (it fails at once, EBUSY, while a call waits on the mount); forced
// (MNT_FORCE: the kernel aborts the calls waiting for the server, an NFS
// mount's RPCs or a FUSE connection, and they fail); lazily (MNT_DETACH:
// the mount leaves the namespace at once and the kernel lets go of it when
// its last user does, without asking the server).
var networkUnmounts = []struct {
	op    string
	flags int
}{{"umount", 0}, {"umount -f", unix.MNT_FORCE}, {"umount -l", unix.MNT_DETACH}}

// unmountNetwork unmounts the topmost mount at target with the unmount(2)
// system call (umount(8) would resolve target first, and a helper such as
// umount.nfs4 may talk to the server), trying each of networkUnmounts
// until one succeeds. Each is bounded (bounded.go): one the kernel holds
// on to is left to finish on its own while the next is tried. The lazy one
// does not wait for the server: the unmount ends whether it answers or not.
func (m *mounter) unmountNetwork(ctx context.Context, target string) error {
	var errs []error
	for i, u := range networkUnmounts {
		if i == len(networkUnmounts)-1 {
			ctx = context.WithoutCancel(ctx) // the last resort, which does not block
		}
		_, err := bounded(ctx, m.calls, u.op, target, func() (struct{}, error) {
			return struct{}{}, m.sys.Unmount(target, u.flags)
		})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			return nil // not mounted (any more): UnmountNFS looks again
		}
		klog.InfoS("Unmount of a network filesystem failed; trying the next way", "path", target, "op", u.op, "err", err)
		errs = append(errs, err)
	}
	return fmt.Errorf("unmounting %s: %w", target, errors.Join(errs...))
}

// ErrInvalidNFSExport: an NFS export that is not server:/path.
var ErrInvalidNFSExport = errors.New("invalid NFS export")

// CheckNFSExport checks an NFS export as a file volume's publish context
// names it: server:/path, with a server, and nothing mount(8) would read
// as an option (a leading '-': it is an operand of the command) or that no
// export has (control characters, spaces: the mount table would show the
// source escaped, and a publish would never find itself already done).
func CheckNFSExport(source string) error {
	server, _, ok := strings.Cut(source, ":/")
	switch {
	case !ok || server == "":
		return fmt.Errorf("%w %q: want server:/path", ErrInvalidNFSExport, source)
	case strings.HasPrefix(source, "-"):
		return fmt.Errorf("%w %q: it begins with '-', which mount(8) would read as an option", ErrInvalidNFSExport, source)
	case strings.ContainsFunc(source, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }):
		return fmt.Errorf("%w %q: it holds spaces or control characters", ErrInvalidNFSExport, source)
	}
	return nil
}
