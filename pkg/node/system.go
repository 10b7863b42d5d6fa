package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// System is the mounter's contact with the kernel beyond mount(8) and the
// filesystem tools (run through k8s.io/utils/exec): stat, block device
// sizes, the mount table, statfs and unmount(2). HostSystem is this
// machine's; NewWith takes another, which is how the fake of
// pkg/node/nodetest stands in for block devices and the mount table.
type System interface {
	Stat(path string) (StatInfo, error)
	// DeviceSize: the size of a block device (or a file one is bound onto).
	DeviceSize(path string) (int64, error)
	// MountAt: the topmost mount whose mount point is path.
	MountAt(path string) (MountInfo, bool, error)
	// MountInTable: the topmost mount whose mount point is path, found in
	// the mount table only: path is not resolved or looked at (nfs.go).
	MountInTable(path string) (MountInfo, bool, error)
	Statfs(path string) (FSStats, error)
	// MountRefs: the other mounts of the same part of the same filesystem.
	MountRefs(path string) ([]string, error)
	// Unmount: the unmount(2) system call, flags MNT_FORCE, MNT_DETACH.
	Unmount(path string, flags int) error
}

// HostSystem is the System of this machine.
func HostSystem() System { return realSystem{} }

// StatInfo is what System.Stat says of a path.
type StatInfo struct {
	IsDir, IsBlock bool
	// Rdev is a device node's device number.
	Rdev uint64
}

// MountInfo is one mount of the mount table.
type MountInfo struct {
	Source, FSType string
	// ReadOnly: the mount's own options say ro; FSReadOnly: the
	// filesystem's (superblock) options do.
	ReadOnly, FSReadOnly bool
	// Dev is the device number of the mounted filesystem (mountinfo's
	// major:minor) when it is on a block device, as it was when mounted,
	// even if that device is gone since; 0 for the others (tmpfs, NFS,
	// overlay: major 0, anonymous devices).
	Dev uint64
}

func blockDev(major, minor int) uint64 {
	if major == 0 {
		return 0
	}
	return unix.Mkdev(uint32(major), uint32(minor))
}

type realSystem struct{}

func (realSystem) Stat(path string) (StatInfo, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return StatInfo{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	mode := st.Mode & unix.S_IFMT
	return StatInfo{IsDir: mode == unix.S_IFDIR, IsBlock: mode == unix.S_IFBLK, Rdev: st.Rdev}, nil
}

func (realSystem) DeviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%w: %s", ErrNotBlockDevice, path)
	}
	// The end of a block device is its size (what BLKGETSIZE64 says).
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("reading the size of %s: %w", path, err)
	}
	return n, nil
}

func (realSystem) MountAt(path string) (MountInfo, bool, error) {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		return MountInfo{}, false, err
	}
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		return MountInfo{}, false, err
	}
	// The last entry for a mount point is the one on top.
	for _, mi := range slices.Backward(infos) {
		if mi.MountPoint == abs {
			return MountInfo{
				Source:     mi.Source,
				FSType:     mi.FsType,
				ReadOnly:   slices.Contains(mi.MountOptions, "ro"),
				FSReadOnly: slices.Contains(mi.SuperOptions, "ro"),
				Dev:        blockDev(mi.Major, mi.Minor),
			}, true, nil
		}
	}
	return MountInfo{}, false, nil
}

func (realSystem) MountInTable(path string) (MountInfo, bool, error) {
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		return MountInfo{}, false, err
	}
	for _, mi := range slices.Backward(infos) {
		if mi.MountPoint == path {
			return MountInfo{Source: mi.Source, FSType: mi.FsType, ReadOnly: slices.Contains(mi.MountOptions, "ro"),
				FSReadOnly: slices.Contains(mi.SuperOptions, "ro")}, true, nil
		}
	}
	return MountInfo{}, false, nil
}

// mountRefs finds the mount path is in (the one with the longest mount
// point: mount-utils' SearchMountPoints takes the last one in the table,
// which is wrong where / is listed after /dev), and returns the other mounts
// of the same directory or file of the same filesystem: bind mounts of it.
func (realSystem) MountRefs(path string) ([]string, error) {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	infos, err := mount.ParseMountInfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	host := -1
	for i, mi := range infos {
		if (abs == mi.MountPoint || mount.PathWithinBase(abs, mi.MountPoint)) &&
			(host < 0 || len(mi.MountPoint) >= len(infos[host].MountPoint)) {
			host = i
		}
	}
	if host < 0 {
		return nil, fmt.Errorf("no mount holds %s", abs)
	}
	h := infos[host]
	root := filepath.Join(h.Root, strings.TrimPrefix(abs, h.MountPoint))
	var refs []string
	for _, mi := range infos {
		if mi.ID != h.ID && mi.Major == h.Major && mi.Minor == h.Minor && mi.Root == root {
			refs = append(refs, mi.MountPoint)
		}
	}
	return refs, nil
}

func (realSystem) Statfs(path string) (FSStats, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return FSStats{}, os.ErrNotExist
		}
		return FSStats{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := int64(s.Bsize)
	return FSStats{
		TotalBytes:     int64(s.Blocks) * bs,
		AvailableBytes: int64(s.Bavail) * bs,
		UsedBytes:      int64(s.Blocks-s.Bfree) * bs,
		TotalInodes:    int64(s.Files),
		FreeInodes:     int64(s.Ffree),
		UsedInodes:     int64(s.Files - s.Ffree),
	}, nil
}

func (realSystem) Unmount(path string, flags int) error {
	if err := unix.Unmount(path, flags); err != nil {
		return &os.PathError{Op: "unmount", Path: path, Err: err}
	}
	return nil
}
