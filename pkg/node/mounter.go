package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Options configure the real Mounter.
type Options struct {
	// SysDir is where sysfs is mounted; "" means /sys. SCSI rescans write
	// under it; a missing class/scsi_host is tolerated.
	SysDir string
	// DeviceWait bounds how long FindDevice waits for a disk's link;
	// 0 means DefaultDeviceWait.
	DeviceWait time.Duration
	// PollInterval is the longest pause between two looks for the link;
	// 0 means 1s. The first looks come quicker.
	PollInterval time.Duration
	// CallWait bounds how long a caller waits for a filesystem call that
	// may block on a network server (statfs, unmount: bounded.go); 0 means
	// DefaultCallWait.
	CallWait time.Duration
}

// DefaultDeviceWait: vCenter reports an attach done before the guest has
// always seen the disk; a SCSI rescan usually brings it within seconds.
const DefaultDeviceWait = 30 * time.Second

// rescanEvery is how often the SCSI hosts are rescanned while waiting.
const rescanEvery = 5 * time.Second

// New returns the Mounter that works on this machine's devices and mounts.
func New(opts Options) Mounter {
	return newMounter(opts, mount.New(""), utilexec.New(), realSystem{})
}

// NewWith returns the Mounter that works through mnt (mount(8)), ex (the
// filesystem tools: blkid, mkfs, fsck, resize2fs...) and sys (the kernel's
// other calls) instead of this machine's: New is NewWith over mount-utils,
// k8s.io/utils/exec and HostSystem. The fake of pkg/node/nodetest runs the
// real Mounter's logic this way over stand-ins of its own.
func NewWith(opts Options, mnt mount.Interface, ex utilexec.Interface, sys System) Mounter {
	return newMounter(opts, mnt, ex, sys)
}

// NewMounter is New with the default options.
func NewMounter() Mounter { return New(Options{}) }

// mounter implements Mounter over mount-utils. Its contact with the kernel
// beyond mount(8) and the filesystem tools goes through sys, so that the
// fake (pkg/node/nodetest) can stand in for devices and the mount table.
type mounter struct {
	opts   Options
	mnt    mount.Interface
	exec   utilexec.Interface
	sfm    *mount.SafeFormatAndMount
	resize *mount.ResizeFs
	sys    System
	calls  *pathCalls // the filesystem calls that may block, running now
}

func newMounter(opts Options, mnt mount.Interface, ex utilexec.Interface, sys System) *mounter {
	if opts.SysDir == "" {
		opts.SysDir = "/sys"
	}
	if opts.DeviceWait <= 0 {
		opts.DeviceWait = DefaultDeviceWait
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.CallWait <= 0 {
		opts.CallWait = DefaultCallWait
	}
	return &mounter{
		opts:   opts,
		mnt:    mnt,
		exec:   ex,
		sfm:    mount.NewSafeFormatAndMount(mnt, ex),
		resize: mount.NewResizeFs(ex),
		sys:    sys,
		calls:  newPathCalls(opts.CallWait),
	}
}

// partitionedFormat is what mount-utils' GetDiskFormat answers for a disk
// with a partition table.
const partitionedFormat = "unknown data, probably partitions"

func (m *mounter) FormatAndMount(ctx context.Context, dev, target, fsType string, mountFlags []string) error {
	if fsType == "" {
		fsType = DefaultFSType
	}
	if !SupportedFSType(fsType) {
		return fmt.Errorf("%w %q: use %s (ext4 is the default)", ErrUnsupportedFilesystem, fsType, DescribeFSTypes())
	}
	existing, err := m.sfm.GetDiskFormat(dev)
	if err != nil {
		return fmt.Errorf("reading what %s holds (blkid): %w", dev, err)
	}
	switch {
	case existing == partitionedFormat:
		return fmt.Errorf("%w: %s holds a partition table; it is left as it is, never formatted", ErrNotBlank, dev)
	case existing != "" && existing != fsType:
		return fmt.Errorf("%w: %s holds a %s filesystem but the volume asks for %s; "+
			"it is neither mounted nor reformatted (set the StorageClass's csi.storage.k8s.io/fstype to %s to use it as it is)",
			ErrFilesystemMismatch, dev, existing, fsType, existing)
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("creating mount point %s: %w", target, err)
	}
	readOnly := slices.Contains(mountFlags, "ro")
	if existing != "" && !readOnly && isExt(fsType) {
		if err := m.growExtOffline(dev); err != nil {
			return err
		}
	}
	if existing == "" {
		klog.InfoS("Formatting blank device", "device", dev, "fsType", fsType)
	}
	if fsType == FSTypeXFS && !slices.Contains(mountFlags, "nouuid") {
		// A restored snapshot or a clone has its source's xfs UUID; without
		// nouuid, xfs refuses to mount it on a node that has the source mounted.
		mountFlags = append(slices.Clip(mountFlags), "nouuid")
	}
	if err := m.sfm.FormatAndMount(dev, target, fsType, mountFlags); err != nil {
		return fmt.Errorf("mounting %s at %s as %s: %w", dev, target, fsType, err)
	}
	if existing != "" && !readOnly && fsType == FSTypeXFS {
		// xfs grows only while mounted.
		if out, err := m.exec.Command("xfs_growfs", "-d", target).CombinedOutput(); err != nil {
			return fmt.Errorf("growing xfs on %s at %s: %w: %s", dev, target, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func isExt(fsType string) bool { return fsType == FSTypeExt4 || fsType == FSTypeExt3 }

// growSlack: a device larger than its ext filesystem by less than this is
// not grown (mkfs leaves a partial block group unused; CNS sizes are whole
// MiB).
const growSlack = 1 << 20

// extNeedsGrow says whether the device is larger than the ext filesystem on
// it, from the superblock (dumpe2fs -h).
func (m *mounter) extNeedsGrow(dev string) (bool, error) {
	size, err := m.sys.DeviceSize(dev)
	if err != nil {
		return false, err
	}
	out, err := m.exec.Command("dumpe2fs", "-h", dev).Output()
	if err != nil {
		return false, fmt.Errorf("reading the superblock of %s (dumpe2fs -h): %w", dev, err)
	}
	fsBytes, err := parseExtSize(string(out))
	if err != nil {
		return false, fmt.Errorf("reading the superblock of %s: %w", dev, err)
	}
	return size-fsBytes >= growSlack, nil
}

// parseExtSize reads "Block count" × "Block size" from dumpe2fs -h output.
func parseExtSize(out string) (int64, error) {
	var count, bsize int64
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "Block count":
			fmt.Sscan(strings.TrimSpace(v), &count)
		case "Block size":
			fmt.Sscan(strings.TrimSpace(v), &bsize)
		}
	}
	if count <= 0 || bsize <= 0 {
		return 0, errors.New("no block count or block size in dumpe2fs output")
	}
	return count * bsize, nil
}

// growExtOffline grows an unmounted ext filesystem to its device: e2fsck -f
// (resize2fs demands a checked filesystem), then resize2fs. Growing offline
// needs no CAP_SYS_RESOURCE, unlike growing a mounted one.
func (m *mounter) growExtOffline(dev string) error {
	need, err := m.extNeedsGrow(dev)
	if err != nil || !need {
		return err
	}
	klog.InfoS("Device is larger than its filesystem: growing it before mounting", "device", dev)
	if out, err := m.exec.Command("e2fsck", "-f", "-p", dev).CombinedOutput(); err != nil {
		// 1: errors corrected; 2: corrected, reboot advised (not for us).
		var ee utilexec.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() > 2 {
			return fmt.Errorf("checking %s before growing it (e2fsck -f -p): %w: %s", dev, err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := m.exec.Command("resize2fs", dev).CombinedOutput(); err != nil {
		return fmt.Errorf("growing the filesystem on %s (resize2fs): %w: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (m *mounter) ResizeFilesystem(ctx context.Context, dev, mountPath string) error {
	format, err := m.sfm.GetDiskFormat(dev)
	if err != nil {
		return fmt.Errorf("reading what %s holds (blkid): %w", dev, err)
	}
	switch {
	case format == "":
		return nil // nothing to grow
	case isExt(format):
		need, err := m.extNeedsGrow(dev)
		if err != nil || !need {
			return err
		}
	case format == FSTypeXFS:
	default:
		return fmt.Errorf("%w %q on %s: only %s grow", ErrUnsupportedFilesystem, format, dev, DescribeFSTypes())
	}
	if _, err := m.resize.Resize(dev, mountPath); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Operation not permitted") {
			return fmt.Errorf("%w: growing the mounted %s filesystem on %s needs CAP_SYS_RESOURCE, which this process lacks: %v",
				ErrResizeNotPermitted, format, dev, err)
		}
		return err
	}
	return nil
}

func (m *mounter) BindMount(source, target string, readOnly bool, mountFlags []string) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("creating mount point %s: %w", target, err)
	}
	opts := bindOptions(readOnly, mountFlags)
	if err := m.mnt.Mount(source, target, "", opts); err != nil {
		return fmt.Errorf("bind-mounting %s at %s: %w", source, target, err)
	}
	return nil
}

func (m *mounter) BindDevice(dev, target string, readOnly bool) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return fmt.Errorf("creating the parent of %s: %w", target, err)
	}
	st, err := os.Lstat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("creating %s: %w", target, err)
		}
		f.Close()
	case err != nil:
		return fmt.Errorf("looking at %s: %w", target, err)
	case st.IsDir():
		// A CO may have made a directory; a device binds onto a file only.
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("%s is a directory, a block device needs a file: %w", target, err)
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			return fmt.Errorf("creating %s: %w", target, err)
		}
		f.Close()
	}
	if err := m.mnt.Mount(dev, target, "", bindOptions(readOnly, nil)); err != nil {
		return fmt.Errorf("bind-mounting device %s onto %s: %w", dev, target, err)
	}
	return nil
}

func bindOptions(readOnly bool, mountFlags []string) []string {
	opts := []string{"bind"}
	for _, f := range mountFlags {
		if f != "bind" && f != "ro" {
			opts = append(opts, f)
		}
	}
	if readOnly || slices.Contains(mountFlags, "ro") {
		opts = append(opts, "ro")
	}
	return opts
}

// maxStacked bounds the unmounts of one target (mounts stacked on it).
const maxStacked = 8

func (m *mounter) Unmount(target string, removeTarget bool) error {
	if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for range maxStacked {
		mounted, err := m.mnt.IsMountPoint(target)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil
		case err != nil && !mount.IsCorruptedMnt(err):
			return fmt.Errorf("checking whether %s is mounted: %w", target, err)
		case err == nil && !mounted:
			if removeTarget {
				if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("removing %s: %w", target, err)
				}
			}
			return nil
		}
		// Mounted, or a corrupted mount (stale, disconnected): unmount.
		if err := m.mnt.Unmount(target); err != nil {
			return fmt.Errorf("unmounting %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmounting %s: still mounted after %d unmounts", target, maxStacked)
}

func (m *mounter) Inspect(path string) (PathInfo, error) {
	st, err := m.sys.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return PathInfo{}, fmt.Errorf("%w: %s", ErrPathNotFound, path)
	}
	if err != nil {
		return PathInfo{}, fmt.Errorf("looking at %s: %w", path, err)
	}
	info := PathInfo{IsDir: st.IsDir, IsBlockDevice: st.IsBlock, DeviceNumber: st.Rdev}
	e, ok, err := m.sys.MountAt(path)
	if err != nil {
		return PathInfo{}, fmt.Errorf("reading the mount table for %s: %w", path, err)
	}
	if ok {
		info.Mounted = true
		info.Source, info.FSType, info.MountedDevice = e.Source, e.FSType, e.Dev
		info.ReadOnly, info.FSReadOnly = e.ReadOnly, e.FSReadOnly
	}
	return info, nil
}

func (m *mounter) DiskDevices(byIDDir string) (map[uint64]string, error) {
	entries, err := os.ReadDir(byIDDir)
	if err != nil {
		return nil, fmt.Errorf("listing the attached disks in %s: %w", byIDDir, err)
	}
	out := map[uint64]string{}
	for _, e := range entries {
		uuid, ok := strings.CutPrefix(e.Name(), "wwn-0x")
		if !ok {
			continue
		}
		if st, err := m.sys.Stat(filepath.Join(byIDDir, e.Name())); err == nil && st.IsBlock {
			out[st.Rdev] = uuid
		}
	}
	return out, nil
}

func (m *mounter) MountRefs(path string) ([]string, error) {
	refs, err := m.sys.MountRefs(path)
	if err != nil {
		return nil, fmt.Errorf("finding the mounts of %s: %w", path, err)
	}
	return refs, nil
}

func (m *mounter) FilesystemStats(ctx context.Context, path string) (FSStats, error) {
	s, err := bounded(ctx, m.calls, "statfs", filepath.Clean(path), func() (FSStats, error) { return m.sys.Statfs(path) })
	if errors.Is(err, os.ErrNotExist) {
		return FSStats{}, fmt.Errorf("%w: %s", ErrPathNotFound, path)
	}
	return s, err
}

func (m *mounter) DeviceSize(path string) (int64, error) {
	n, err := m.sys.DeviceSize(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrPathNotFound, path)
	}
	return n, err
}
