// Package node is the node plugin's contact with the machine: finding an
// attached disk by its UUID, formatting it only when blank, mounting, bind
// mounts, raw block, resizing and volume statistics.
package node

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// Mounter is everything the CSI node service does to the machine. The real
// one works on block devices and mount points through k8s.io/mount-utils; the
// fake one (for unit tests) is built on mount-utils' own fakes.
//
// It knows nothing of CSI: the driver validates requests, decides what to do
// and maps the sentinel errors below to gRPC codes.
type Mounter interface {
	// FindDevice finds the block device of the attached disk with that UUID:
	// the link <byIDDir>/wwn-0x<uuid> (lowercase, no dashes), resolved. It
	// waits a bounded time for the link, rescanning the SCSI hosts meanwhile,
	// and checks that the link leads to a block device of non-zero size.
	// Errors: ErrInvalidDiskUUID, ErrDeviceNotFound, ErrNotBlockDevice.
	FindDevice(ctx context.Context, byIDDir, diskUUID string) (Device, error)

	// FormatAndMount mounts the block device at target (a directory, created
	// when missing) as fsType ("" means ext4). It formats the device only
	// when it is blank (no filesystem and no partition table); a device that
	// holds anything else than an fsType filesystem is refused, never
	// formatted (ErrFilesystemMismatch, ErrNotBlank). When the device is
	// larger than the filesystem on it, the filesystem is grown (ext offline
	// before mounting, xfs right after).
	FormatAndMount(ctx context.Context, devicePath, target, fsType string, mountFlags []string) error

	// BindMount bind-mounts the directory source at target (a directory,
	// created when missing), read-only if asked, with extra mount flags.
	BindMount(source, target string, readOnly bool, mountFlags []string) error
	// BindDevice bind-mounts the block device onto target, a file created
	// when missing, read-only if asked.
	BindDevice(devicePath, target string, readOnly bool) error
	// Unmount unmounts whatever is mounted at target (stacked mounts too) and,
	// if removeTarget, removes target. A target that does not exist or has
	// nothing mounted is success.
	Unmount(target string, removeTarget bool) error

	// MountNFS mounts the NFS export source ("server:/path") at target (a
	// directory, created when missing) as fsType: nfs4 (with
	// NFSv41Options) or nfs; read-only if asked, with extra mount flags.
	MountNFS(source, target, fsType string, readOnly bool, mountFlags []string) error
	// UnmountNFS unmounts an NFS mount at target without looking at target
	// (whose server may be gone), forcing it when it hangs, then detaching
	// it lazily, each step bounded (bounded.go): it ends whether the server
	// answers or not. It removes target if asked. Nothing mounted there is
	// success.
	UnmountNFS(ctx context.Context, target string, removeTarget bool) error
	// MountEntry is what the mount table says is mounted at path (Mounted,
	// Source, FSType, ReadOnly), found without resolving or looking at
	// path: a stat of an NFS mount whose server is gone may hang.
	MountEntry(path string) (PathInfo, error)

	// Inspect says what is at path: ErrPathNotFound when nothing.
	Inspect(path string) (PathInfo, error)
	// DiskDevices maps the device number of each disk with a link in
	// byIDDir (wwn-0x<uuid>) to its UUID: the disks attached now.
	DiskDevices(byIDDir string) (map[uint64]string, error)
	// MountRefs lists the other mount points of what path is: for a mount
	// point (a staging path), the bind mounts of its filesystem; for a
	// device node, the files it is bound onto. That is where a volume is
	// published.
	MountRefs(path string) ([]string, error)

	// RescanDevice asks the kernel to re-read the device's size (a SCSI
	// rescan where the device has one) and returns the size it now has.
	RescanDevice(ctx context.Context, devicePath string) (int64, error)
	// ResizeFilesystem grows the filesystem on devicePath, mounted at
	// mountPath, to fill the device (online). It does nothing when there is
	// nothing to grow. ErrResizeNotPermitted when the kernel refuses (growing
	// a mounted ext4 needs CAP_SYS_RESOURCE).
	ResizeFilesystem(ctx context.Context, devicePath, mountPath string) error

	// FilesystemStats reports the usage of the filesystem path is on. The
	// statfs is bounded (bounded.go): ErrNotResponding when it has not
	// returned within the call wait or before ctx is done (a hard NFS mount
	// whose server does not answer); one per path at a time.
	FilesystemStats(ctx context.Context, path string) (FSStats, error)
	// DeviceSize reports the size in bytes of a block device (or of a file
	// a block device is bind-mounted onto).
	DeviceSize(path string) (int64, error)
}

// Device is an attached disk as the node sees it.
type Device struct {
	// Path is the resolved device node, e.g. /dev/sdb.
	Path string
	// Link is the by-id link it was found through.
	Link string
	// SizeBytes is the device's size.
	SizeBytes int64
}

// PathInfo describes a path on the node.
type PathInfo struct {
	IsDir bool
	// IsBlockDevice: the path is a block device node (or a file a block
	// device is bind-mounted onto); DeviceNumber is then its rdev.
	IsBlockDevice bool
	DeviceNumber  uint64
	// Mounted: path is a mount point. Source is the mounted device as the
	// mount table says (for a bind mount of a directory, the device of the
	// filesystem it comes from); FSType its type.
	Mounted bool
	Source  string
	FSType  string
	// MountedDevice is the device number of the block device the mounted
	// filesystem is on, as when it was mounted (a disk hot-removed since
	// keeps its old number here); 0 when it is on none (tmpfs, NFS).
	MountedDevice uint64
	// ReadOnly: this mount is read-only (a ro bind mount, or "ro" given).
	ReadOnly bool
	// FSReadOnly: the filesystem itself is read-only (e.g. ext4 remounted
	// read-only after errors), whatever the mount asked for.
	FSReadOnly bool
}

// FSStats is the usage of a filesystem.
type FSStats struct {
	TotalBytes, AvailableBytes, UsedBytes int64
	TotalInodes, FreeInodes, UsedInodes   int64
}

// Sentinel errors; wrapped with context. The driver maps them to gRPC codes.
var (
	// ErrInvalidDiskUUID: the disk UUID is not 32 hexadecimal digits.
	ErrInvalidDiskUUID = errors.New("invalid disk UUID")
	// ErrDeviceNotFound: no device appeared for the disk within the wait.
	ErrDeviceNotFound = errors.New("device not found")
	// ErrNotBlockDevice: the disk's link leads to something else than a
	// usable block device.
	ErrNotBlockDevice = errors.New("not a block device")
	// ErrFilesystemMismatch: the device holds another filesystem than asked.
	ErrFilesystemMismatch = errors.New("device holds another filesystem")
	// ErrNotBlank: the device holds a partition table or data blkid can't
	// name; it is never formatted.
	ErrNotBlank = errors.New("device is not blank")
	// ErrUnsupportedFilesystem: a filesystem type this driver does not make.
	ErrUnsupportedFilesystem = errors.New("unsupported filesystem type")
	// ErrPathNotFound: the path does not exist.
	ErrPathNotFound = errors.New("path not found")
	// ErrResizeNotPermitted: the kernel refused to grow a mounted filesystem.
	ErrResizeNotPermitted = errors.New("resize not permitted")
	// ErrNotResponding: a filesystem call has not returned within the call
	// wait: the path is on a network filesystem whose server does not
	// answer (bounded.go). The call is left to finish on its own.
	ErrNotResponding = errors.New("filesystem not responding")
)

// Filesystem types the driver formats and grows.
const (
	FSTypeExt4 = "ext4"
	FSTypeExt3 = "ext3"
	FSTypeXFS  = "xfs"
	// DefaultFSType is what a volume gets when nobody asked for one.
	DefaultFSType = FSTypeExt4
)

// FSTypes are the filesystems a block volume may have: the driver formats
// and grows them. The one list: the controller's checks (StorageClass
// fstype, capabilities) and the node's use it, and the messages name it.
var FSTypes = []string{FSTypeExt4, FSTypeXFS, FSTypeExt3}

// SupportedFSType says whether the driver formats and grows fsType.
func SupportedFSType(fsType string) bool {
	return slices.Contains(FSTypes, fsType)
}

// DescribeFSTypes is FSTypes for a message: "ext4, xfs or ext3".
func DescribeFSTypes() string {
	return strings.Join(FSTypes[:len(FSTypes)-1], ", ") + " or " + FSTypes[len(FSTypes)-1]
}
