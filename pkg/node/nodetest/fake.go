// Package nodetest is the fake node.Mounter for unit tests of the node
// service (pkg/driver) and of pkg/node itself: the real Mounter's logic
// (node.NewWith) over stand-ins for the machine.
package nodetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
)

// Fake is a Mounter for unit tests of the node service, without root: the
// real mounter's logic (format only when blank, refuse a mismatch, grow,
// idempotent unmount) running over mount-utils' FakeMounter and over
// k8s.io/utils/exec/testing commands that act on an in-memory table of
// disks. A disk's device node is a plain file under the fake's root, found
// through a real wwn-0x link in ByIDDir().
type Fake struct {
	node.Mounter
	// Mounts is the fake mount table (mount-utils' FakeMounter).
	Mounts *mount.FakeMounter

	root string
	mu   sync.Mutex
	// disks by device path; gone: the device numbers of device nodes
	// removed (ReplaceDevice).
	disks map[string]*FakeDisk
	gone  map[string]uint64
	cmds  []string
	// DenyOnlineResize makes resize2fs of a mounted ext filesystem fail as
	// it does without CAP_SYS_RESOURCE.
	DenyOnlineResize bool
}

// FakeDisk is a disk of the Fake.
type FakeDisk struct {
	UUID string
	Path string // its device node
	Size int64
	// FSType is the filesystem on it ("" when none); FSSize its size.
	FSType string
	FSSize int64
	// PartitionTable: the disk holds one (and so is not blank).
	PartitionTable bool
	// UsedBytes is what FilesystemStats says is used.
	UsedBytes int64
	// FSReadOnly: the filesystem went read-only (as after errors).
	FSReadOnly bool
	// Formats counts the mkfs runs on it.
	Formats int
	rdev    uint64
}

// NewFake makes a Fake whose devices, links and sysfs live under root
// (give it t.TempDir()). It waits 200 ms for a missing device.
func NewFake(root string) *Fake { return NewFakeWith(root, FakeOptions{}) }

// FakeOptions change a Fake.
type FakeOptions struct {
	// Mounter are the options of the Mounter over the fake; SysDir is the
	// fake's own; DeviceWait 0 means 200 ms, PollInterval 0 20 ms.
	Mounter node.Options
	// WrapSystem, when set, stands between the Mounter and the fake's
	// System: a test makes some calls hang, say.
	WrapSystem func(node.System) node.System
}

// NewFakeWith is NewFake with options.
func NewFakeWith(root string, o FakeOptions) *Fake {
	f := &Fake{root: root, disks: map[string]*FakeDisk{}, gone: map[string]uint64{}, Mounts: mount.NewFakeMounter(nil)}
	for _, d := range []string{"dev", "by-id", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			panic(err)
		}
	}
	opts := o.Mounter
	opts.SysDir = f.SysDir()
	if opts.DeviceWait <= 0 {
		opts.DeviceWait = 200 * time.Millisecond
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	var sys node.System = fakeSystem{f}
	if o.WrapSystem != nil {
		sys = o.WrapSystem(sys)
	}
	f.Mounter = node.NewWith(opts, keepOptsMounter{f.Mounts}, fakeExec{f}, sys)
	return f
}

// SysDir is the fake's sysfs directory (where SCSI rescans write).
func (f *Fake) SysDir() string { return filepath.Join(f.root, "sys") }

// ByIDDir is the fake's by-id directory.
func (f *Fake) ByIDDir() string { return filepath.Join(f.root, "by-id") }

// AddDisk attaches a blank disk of that size: a device file and its
// wwn-0x link.
func (f *Fake) AddDisk(uuid string, size int64) FakeDisk {
	id, err := node.NormalizeDiskUUID(uuid)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.disks) + len(f.gone) // device names and numbers are never reused
	path := filepath.Join(f.root, "dev", fmt.Sprintf("sd%c%d", 'b'+n%24, n))
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		panic(err)
	}
	if err := os.Symlink(path, node.DeviceLink(f.ByIDDir(), id)); err != nil {
		panic(err)
	}
	d := &FakeDisk{UUID: id, Path: path, Size: size, rdev: uint64(8<<8 | 16 + n)}
	f.disks[path] = d
	return *d
}

// Disk returns the disk with that UUID as it is now.
func (f *Fake) Disk(uuid string) FakeDisk {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.diskByUUID(uuid)
}

// UpdateDisk changes a disk (grow it, put a filesystem on it, ...).
func (f *Fake) UpdateDisk(uuid string, change func(*FakeDisk)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.diskByUUID(uuid))
}

// Commands lists the commands run so far, each as one line.
func (f *Fake) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *Fake) diskByUUID(uuid string) *FakeDisk {
	id, _ := node.NormalizeDiskUUID(uuid)
	for _, d := range f.disks {
		if d.UUID == id {
			return d
		}
	}
	panic("fake: no disk " + uuid)
}

// mountOf returns the topmost fake mount at path.
func (f *Fake) mountOf(path string) (mount.MountPoint, bool) {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		abs = path
	}
	mps, _ := f.Mounts.List()
	for _, mp := range slices.Backward(mps) {
		if mp.Path == abs {
			return mp, true
		}
	}
	return mount.MountPoint{}, false
}

// diskAt returns the disk whose device node is path, or which is mounted
// (or bound) at path.
func (f *Fake) diskAt(path string) *FakeDisk {
	if d, ok := f.disks[path]; ok {
		return d
	}
	if p, err := filepath.EvalSymlinks(path); err == nil && p != path {
		if d, ok := f.disks[p]; ok {
			return d // a by-id link
		}
	}
	if mp, ok := f.mountOf(path); ok {
		return f.disks[mp.Device]
	}
	return nil
}

// diskUnder returns the disk whose filesystem path is on.
func (f *Fake) diskUnder(path string) *FakeDisk {
	abs, err := filepath.EvalSymlinks(path)
	if err != nil {
		abs = path
	}
	var best mount.MountPoint
	mps, _ := f.Mounts.List()
	for _, mp := range mps {
		if (abs == mp.Path || strings.HasPrefix(abs, mp.Path+"/")) && len(mp.Path) >= len(best.Path) {
			best = mp
		}
	}
	return f.disks[best.Device]
}

// devOf is the device number of a mount's filesystem: its disk's, as when
// it was mounted (a disk moved to a new device node since keeps its old
// number in the mounts made before), or for a bind mount its source's.
func (f *Fake) devOf(mp mount.MountPoint) uint64 {
	for range 8 {
		if d := f.disks[mp.Device]; d != nil {
			return d.rdev
		}
		if dev, ok := f.gone[mp.Device]; ok {
			return dev
		}
		src, ok := f.mountOf(mp.Device)
		if !ok {
			return 0
		}
		mp = src
	}
	return 0
}

// ReplaceDevice hot-removes the disk's device node and brings the disk
// back under a new one (a new name, a new device number, the link moved),
// as a SCSI disk that went away and came back does. Mounts made before
// keep the old device, now gone.
func (f *Fake) ReplaceDevice(uuid string) FakeDisk {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.diskByUUID(uuid)
	old := d.Path
	n := len(f.disks) + len(f.gone)
	d.Path = filepath.Join(f.root, "dev", fmt.Sprintf("sd%c%d", 'b'+n%24, n))
	if err := os.Rename(old, d.Path); err != nil {
		panic(err)
	}
	link := node.DeviceLink(f.ByIDDir(), d.UUID)
	if err := os.Remove(link); err != nil {
		panic(err)
	}
	if err := os.Symlink(d.Path, link); err != nil {
		panic(err)
	}
	delete(f.disks, old)
	f.gone[old] = d.rdev
	d.rdev = uint64(8<<8 | 16 + n)
	f.disks[d.Path] = d
	return *d
}

func (f *Fake) mountedDisk(d *FakeDisk) bool {
	mps, _ := f.Mounts.List()
	return slices.ContainsFunc(mps, func(mp mount.MountPoint) bool { return mp.Device == d.Path })
}

// keepOptsMounter mends a flaw of FakeMounter.Unmount: it drops the
// options (ro) of every mount it keeps.
type keepOptsMounter struct{ *mount.FakeMounter }

func (m keepOptsMounter) Unmount(target string) error {
	before, _ := m.List()
	saved := slices.Clone(before)
	if err := m.FakeMounter.Unmount(target); err != nil {
		return err
	}
	after, _ := m.List() // the fake's own slice: mended in place
	for i := range after {
		for _, b := range saved {
			if b.Path == after[i].Path && b.Device == after[i].Device && len(after[i].Opts) == 0 {
				after[i].Opts = b.Opts
				break
			}
		}
	}
	return nil
}

type fakeSystem struct{ f *Fake }

func (s fakeSystem) Stat(path string) (node.StatInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return node.StatInfo{}, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if d := s.f.diskAt(path); d != nil && !st.IsDir() {
		return node.StatInfo{IsBlock: true, Rdev: d.rdev}, nil
	}
	return node.StatInfo{IsDir: st.IsDir()}, nil
}

func (s fakeSystem) DeviceSize(path string) (int64, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if d := s.f.diskAt(path); d != nil {
		return d.Size, nil
	}
	return 0, fmt.Errorf("%w: %s", node.ErrNotBlockDevice, path)
}

func (s fakeSystem) MountAt(path string) (node.MountInfo, bool, error) {
	if _, err := os.Stat(path); err != nil {
		return node.MountInfo{}, false, err
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	mp, ok := s.f.mountOf(path)
	if !ok {
		return node.MountInfo{}, false, nil
	}
	e := node.MountInfo{Source: mp.Device, FSType: mp.Type, ReadOnly: slices.Contains(mp.Opts, "ro"), Dev: s.f.devOf(mp)}
	if d := s.f.disks[mp.Device]; d != nil {
		// As in mountinfo: a filesystem gone read-only shows in the
		// superblock options, the mount's own options stay as they were.
		e.FSType, e.FSReadOnly = d.FSType, d.FSReadOnly
	}
	return e, true, nil
}

func (s fakeSystem) MountInTable(path string) (node.MountInfo, bool, error) {
	mps, err := s.f.Mounts.List()
	if err != nil {
		return node.MountInfo{}, false, err
	}
	for _, mp := range slices.Backward(mps) {
		if mp.Path == path {
			return node.MountInfo{Source: mp.Device, FSType: mp.Type, ReadOnly: slices.Contains(mp.Opts, "ro")}, true, nil
		}
	}
	return node.MountInfo{}, false, nil
}

func (s fakeSystem) Statfs(path string) (node.FSStats, error) {
	if _, err := os.Stat(path); err != nil {
		return node.FSStats{}, err
	}
	s.f.mu.Lock()
	d := s.f.diskUnder(path)
	s.f.mu.Unlock()
	if d == nil {
		return node.HostSystem().Statfs(path)
	}
	inodes := d.FSSize / 16384
	return node.FSStats{
		TotalBytes: d.FSSize, AvailableBytes: d.FSSize - d.UsedBytes, UsedBytes: d.UsedBytes,
		TotalInodes: inodes, FreeInodes: inodes - 11, UsedInodes: 11,
	}, nil
}

func (s fakeSystem) MountRefs(path string) ([]string, error) {
	return s.f.Mounts.GetMountRefs(path)
}

// unmount: the fake's mount table has no busy mounts; every way unmounts.
func (s fakeSystem) Unmount(path string, _ int) error {
	if _, ok, _ := s.MountInTable(path); !ok {
		return &os.PathError{Op: "unmount", Path: path, Err: unix.EINVAL}
	}
	return keepOptsMounter{s.f.Mounts}.Unmount(path)
}

// fakeExec runs the filesystem tools against the fake's disks; every
// command is a k8s.io/utils/exec/testing FakeCmd.
type fakeExec struct{ f *Fake }

func (e fakeExec) Command(cmd string, args ...string) utilexec.Cmd {
	run := func() ([]byte, []byte, error) { return e.f.run(cmd, args) }
	return testingexec.InitFakeCmd(&testingexec.FakeCmd{
		CombinedOutputScript: []testingexec.FakeAction{run},
		OutputScript:         []testingexec.FakeAction{run},
	}, cmd, args...)
}

func (e fakeExec) CommandContext(_ context.Context, cmd string, args ...string) utilexec.Cmd {
	return e.Command(cmd, args...)
}

func (e fakeExec) LookPath(file string) (string, error) { return file, nil }

func exitErr(status int) error { return testingexec.FakeExitError{Status: status} }

// run simulates one command on the fake's disks.
func (f *Fake) run(cmd string, args []string) ([]byte, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, strings.Join(append([]string{cmd}, args...), " "))
	if len(args) == 0 {
		return nil, nil, exitErr(1)
	}
	last := args[len(args)-1]
	d := f.diskAt(last)
	if d == nil {
		return []byte(cmd + ": " + last + ": no such device"), nil, exitErr(2)
	}
	switch {
	case cmd == "blkid":
		switch {
		case d.PartitionTable:
			return []byte("DEVNAME=" + d.Path + "\nPTTYPE=gpt\n"), nil, nil
		case d.FSType != "":
			return []byte("DEVNAME=" + d.Path + "\nTYPE=" + d.FSType + "\n"), nil, nil
		}
		return nil, nil, exitErr(2) // nothing found
	case strings.HasPrefix(cmd, "mkfs."):
		d.FSType, d.FSSize, d.UsedBytes, d.PartitionTable = strings.TrimPrefix(cmd, "mkfs."), d.Size, 0, false
		d.Formats++
		return nil, nil, nil
	case cmd == "fsck", cmd == "e2fsck":
		return nil, nil, nil
	case cmd == "dumpe2fs":
		if d.FSType != node.FSTypeExt4 && d.FSType != node.FSTypeExt3 {
			return []byte("dumpe2fs: Bad magic number in super-block"), nil, exitErr(1)
		}
		return []byte(fmt.Sprintf("Block count:              %d\nBlock size:               4096\n", d.FSSize/4096)), nil, nil
	case cmd == "resize2fs":
		if f.DenyOnlineResize && f.mountedDisk(d) {
			return []byte("resize2fs: Permission denied to resize filesystem"), nil, exitErr(1)
		}
		d.FSSize = d.Size
		return nil, nil, nil
	case cmd == "xfs_growfs":
		d.FSSize = d.Size
		return nil, nil, nil
	}
	return []byte(cmd + ": not simulated by the fake"), nil, exitErr(127)
}

var _ node.Mounter = (*Fake)(nil)
