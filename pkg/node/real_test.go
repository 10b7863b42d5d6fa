package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests on real block devices: loop devices over sparse files in
// t.TempDir(), a by-id directory of our own with the wwn-0x links, real
// mkfs, mount, resize. They need root (CI runs as root).

const mib = int64(1) << 20

type realEnv struct {
	m     *mounter
	dir   string
	byID  string
	ctx   context.Context
	disks int
}

func newRealEnv(t *testing.T) *realEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	if testing.Short() {
		t.Skip("real loop devices and mkfs: not in -short (make unit); make test runs it")
	}
	for _, tool := range []string{"losetup", "blkid", "mkfs.ext4", "resize2fs", "e2fsck", "dumpe2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install util-linux and e2fsprogs", tool)
		}
	}
	dir := t.TempDir()
	e := &realEnv{dir: dir, byID: filepath.Join(dir, "by-id"), ctx: context.Background()}
	if err := os.Mkdir(e.byID, 0o755); err != nil {
		t.Fatal(err)
	}
	e.m = New(Options{DeviceWait: 2 * time.Second}).(*mounter)
	return e
}

type loopDisk struct {
	file, dev, uuid string
}

// disk makes a loop device over a sparse file of that size and its wwn-0x
// link; cleanup detaches it.
func (e *realEnv) disk(t *testing.T, size int64) *loopDisk {
	t.Helper()
	e.disks++
	file := filepath.Join(e.dir, "disk"+strconv.Itoa(e.disks)+".img")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detaching %s: %v: %s", dev, err, out)
		}
	})
	b := make([]byte, 16)
	rand.Read(b)
	d := &loopDisk{file: file, dev: dev, uuid: hex.EncodeToString(b)}
	if err := os.Symlink(dev, DeviceLink(e.byID, d.uuid)); err != nil {
		t.Fatal(err)
	}
	return d
}

// grow grows the disk's file and tells the loop device.
func (d *loopDisk) grow(t *testing.T, size int64) {
	t.Helper()
	if err := os.Truncate(d.file, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-c", d.dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -c: %v: %s", err, out)
	}
}

// path returns a path under the test's directory; cleanup unmounts
// whatever is left mounted there.
func (e *realEnv) path(t *testing.T, name string) string {
	p := filepath.Join(e.dir, name)
	t.Cleanup(func() {
		for range maxStacked {
			if err := unix.Unmount(p, 0); err != nil {
				if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					t.Errorf("cleanup: unmounting %s: %v", p, err)
					unix.Unmount(p, unix.MNT_DETACH)
				}
				return
			}
		}
	})
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

func blkidType(t *testing.T, dev string) string {
	out, _ := exec.Command("blkid", "-p", "-s", "TYPE", "-o", "value", dev).Output()
	return strings.TrimSpace(string(out))
}

func TestRealStageWriteRemount(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	staging, target, roTarget := e.path(t, "staging"), e.path(t, "pods/target"), e.path(t, "pods/ro")

	dev, err := e.m.FindDevice(e.ctx, e.byID, strings.ToUpper(d.uuid))
	if err != nil || dev.Path != d.dev || dev.SizeBytes != 64*mib {
		t.Fatalf("FindDevice = %+v, %v; want %s of 64 MiB", dev, err, d.dev)
	}
	if err := e.m.FormatAndMount(e.ctx, dev.Path, staging, "", []string{"noatime"}); err != nil {
		t.Fatal(err)
	}
	if got := blkidType(t, d.dev); got != "ext4" {
		t.Fatalf("blank disk formatted as %q, want ext4", got)
	}
	info, err := e.m.Inspect(staging)
	if err != nil || !info.Mounted || info.Source != d.dev || info.FSType != "ext4" || info.ReadOnly || info.FSReadOnly {
		t.Fatalf("Inspect(staging) = %+v, %v", info, err)
	}
	if err := e.m.BindMount(staging, target, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatalf("writing through the publish target: %v", err)
	}
	if err := e.m.BindMount(staging, roTarget, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(roTarget, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing to the read-only bind: %v, want EROFS", err)
	}
	if ri, _ := e.m.Inspect(roTarget); !ri.Mounted || !ri.ReadOnly || ri.FSReadOnly || ri.Source != d.dev {
		t.Errorf("Inspect(ro target) = %+v; want a read-only mount of a read-write %s", ri, d.dev)
	}
	if refs, err := e.m.MountRefs(staging); err != nil || !slices.Contains(refs, target) || !slices.Contains(refs, roTarget) {
		t.Errorf("MountRefs(staging) = %q, %v; want both publish targets", refs, err)
	}
	st, err := e.m.FilesystemStats(context.Background(), target)
	if err != nil || st.TotalBytes <= 0 || st.TotalBytes > 64*mib || st.UsedBytes <= 0 || st.TotalInodes <= 0 || st.FreeInodes >= st.TotalInodes {
		t.Errorf("FilesystemStats = %+v, %v", st, err)
	}

	for _, p := range []string{target, roTarget} {
		if err := e.m.Unmount(p, true); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Unmount: %v", p, err)
		}
		if err := e.m.Unmount(p, true); err != nil {
			t.Errorf("second Unmount of %s: %v", p, err)
		}
	}
	if err := e.m.Unmount(staging, false); err != nil {
		t.Fatal(err)
	}
	if info, _ := e.m.Inspect(staging); info.Mounted || !info.IsDir {
		t.Errorf("staging after Unmount: %+v, want an unmounted directory", info)
	}

	// Again: not reformatted, the data is there.
	if err := e.m.FormatAndMount(e.ctx, dev.Path, staging, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(staging, "data")); err != nil || string(b) != "kept" {
		t.Errorf("data after remount: %q, %v; want \"kept\"", b, err)
	}
}

func TestRealRefusesOtherFilesystem(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	staging := e.path(t, "staging")
	// An ext4 disk with data, asked for as xfs.
	run(t, "mkfs.ext4", "-q", "-F", d.dev)
	manual := e.path(t, "manual")
	os.Mkdir(manual, 0o755)
	run(t, "mount", d.dev, manual)
	os.WriteFile(filepath.Join(manual, "precious"), []byte("data"), 0o644)
	run(t, "umount", manual)

	err := e.m.FormatAndMount(e.ctx, d.dev, staging, "xfs", nil)
	if !errors.Is(err, ErrFilesystemMismatch) || !strings.Contains(err.Error(), "holds a ext4 filesystem but the volume asks for xfs") {
		t.Fatalf("FormatAndMount as xfs of an ext4 disk = %v, want ErrFilesystemMismatch", err)
	}
	if info, _ := e.m.Inspect(staging); info.Mounted {
		t.Error("the refused disk was mounted")
	}
	if got := blkidType(t, d.dev); got != "ext4" {
		t.Fatalf("disk now holds %q, want ext4 untouched", got)
	}
	run(t, "mount", "-o", "ro", d.dev, manual)
	defer run(t, "umount", manual)
	if b, err := os.ReadFile(filepath.Join(manual, "precious")); err != nil || string(b) != "data" {
		t.Errorf("data after the refusal: %q, %v", b, err)
	}
}

func TestRealRefusesPartitionTable(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	// An MBR with one Linux partition from sector 2048 to the end.
	mbr := make([]byte, 512)
	entry := mbr[446:462]
	entry[4] = 0x83
	binary.LittleEndian.PutUint32(entry[8:], 2048)
	binary.LittleEndian.PutUint32(entry[12:], uint32(64*mib/512-2048))
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(d.dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(mbr)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = e.m.FormatAndMount(e.ctx, d.dev, e.path(t, "staging"), "", nil)
	if !errors.Is(err, ErrNotBlank) || !strings.Contains(err.Error(), "partition table") {
		t.Fatalf("FormatAndMount of a partitioned disk = %v, want ErrNotBlank", err)
	}
	if got := blkidType(t, d.dev); got != "" {
		t.Errorf("partitioned disk now holds a %q filesystem", got)
	}
}

// TestRealExtOfflineGrow: a disk that grew while not mounted gets its ext4
// grown when staged again; no CAP_SYS_RESOURCE needed.
func TestRealExtOfflineGrow(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	staging := e.path(t, "staging")
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(staging, "data"), []byte("kept"), 0o644)
	before, _ := e.m.FilesystemStats(context.Background(), staging)
	if err := e.m.Unmount(staging, false); err != nil {
		t.Fatal(err)
	}
	d.grow(t, 160*mib)
	if n, err := e.m.RescanDevice(e.ctx, d.dev); err != nil || n != 160*mib {
		t.Fatalf("RescanDevice = %d, %v; want %d", n, err, 160*mib)
	}
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	after, _ := e.m.FilesystemStats(context.Background(), staging)
	if after.TotalBytes < before.TotalBytes+80*mib {
		t.Errorf("filesystem %d bytes after growing the disk, was %d: not grown", after.TotalBytes, before.TotalBytes)
	}
	if b, err := os.ReadFile(filepath.Join(staging, "data")); err != nil || string(b) != "kept" {
		t.Errorf("data after the grow: %q, %v", b, err)
	}
	// Staging again with nothing to grow does not run resize2fs.
	need, err := e.m.extNeedsGrow(d.dev)
	if err != nil || need {
		t.Errorf("extNeedsGrow after the grow = %t, %v; want false", need, err)
	}
}

// hasCapability says whether this process has the capability (bit number)
// in its effective set.
func hasCapability(t *testing.T, bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n&(1<<bit) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

const capSysResource = 24

// TestRealExtOnlineGrow grows a mounted ext4. The kernel allows that only
// with CAP_SYS_RESOURCE; without it the error must say so.
func TestRealExtOnlineGrow(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	staging := e.path(t, "staging")
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := e.m.FilesystemStats(context.Background(), staging)
	d.grow(t, 160*mib)
	if n, err := e.m.RescanDevice(e.ctx, d.dev); err != nil || n != 160*mib {
		t.Fatalf("RescanDevice = %d, %v", n, err)
	}
	err := e.m.ResizeFilesystem(e.ctx, d.dev, staging)
	if !hasCapability(t, capSysResource) {
		if !errors.Is(err, ErrResizeNotPermitted) || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
			t.Fatalf("online resize without CAP_SYS_RESOURCE = %v, want ErrResizeNotPermitted naming it", err)
		}
		t.Skip("growing a mounted ext4 needs CAP_SYS_RESOURCE, which this machine lacks (the clear error was checked); " +
			"the offline path is TestRealExtOfflineGrow")
	}
	if err != nil {
		t.Fatal(err)
	}
	after, _ := e.m.FilesystemStats(context.Background(), staging)
	if after.TotalBytes < before.TotalBytes+80*mib {
		t.Errorf("filesystem %d bytes, was %d: not grown", after.TotalBytes, before.TotalBytes)
	}
}

func needXFS(t *testing.T) {
	for _, tool := range []string{"mkfs.xfs", "xfs_growfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install xfsprogs)", tool)
		}
	}
}

// TestRealXFS: format xfs, keep data, grow at stage and online (xfs grows
// mounted, with CAP_SYS_ADMIN only).
func TestRealXFS(t *testing.T) {
	needXFS(t)
	e := newRealEnv(t)
	d := e.disk(t, 320*mib) // mkfs.xfs wants 300 MB at least
	staging := e.path(t, "staging")
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "xfs", nil); err != nil {
		t.Fatal(err)
	}
	if got := blkidType(t, d.dev); got != "xfs" {
		t.Fatalf("formatted as %q, want xfs", got)
	}
	os.WriteFile(filepath.Join(staging, "data"), []byte("kept"), 0o644)
	s1, _ := e.m.FilesystemStats(context.Background(), staging)
	if err := e.m.Unmount(staging, false); err != nil {
		t.Fatal(err)
	}
	// Grown while unstaged: grown when staged again.
	d.grow(t, 480*mib)
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "xfs", nil); err != nil {
		t.Fatal(err)
	}
	s2, _ := e.m.FilesystemStats(context.Background(), staging)
	if s2.TotalBytes < s1.TotalBytes+100*mib {
		t.Errorf("xfs %d bytes after the disk grew, was %d", s2.TotalBytes, s1.TotalBytes)
	}
	// Grown while mounted: ResizeFilesystem.
	d.grow(t, 640*mib)
	if _, err := e.m.RescanDevice(e.ctx, d.dev); err != nil {
		t.Fatal(err)
	}
	if err := e.m.ResizeFilesystem(e.ctx, d.dev, staging); err != nil {
		t.Fatal(err)
	}
	s3, _ := e.m.FilesystemStats(context.Background(), staging)
	if s3.TotalBytes < s2.TotalBytes+100*mib {
		t.Errorf("xfs %d bytes after the online grow, was %d", s3.TotalBytes, s2.TotalBytes)
	}
	if b, err := os.ReadFile(filepath.Join(staging, "data")); err != nil || string(b) != "kept" {
		t.Errorf("data: %q, %v", b, err)
	}
	// Asked for as ext4: refused.
	if err := e.m.Unmount(staging, false); err != nil {
		t.Fatal(err)
	}
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "ext4", nil); !errors.Is(err, ErrFilesystemMismatch) {
		t.Errorf("xfs disk staged as ext4: %v, want ErrFilesystemMismatch", err)
	}
}

func TestRealBlockDevice(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 32*mib)
	target := e.path(t, "pods/block/dev")
	if err := e.m.BindDevice(d.dev, target, false); err != nil {
		t.Fatal(err)
	}
	// Bound twice: two stacked mounts, which Unmount must both take off.
	if err := e.m.BindDevice(d.dev, target, false); err != nil {
		t.Fatal(err)
	}
	ti, err := e.m.Inspect(target)
	di, _ := e.m.Inspect(d.dev)
	if err != nil || !ti.IsBlockDevice || ti.DeviceNumber != di.DeviceNumber || !ti.Mounted {
		t.Fatalf("Inspect(target) = %+v, %v; want the device %s (%d)", ti, err, d.dev, di.DeviceNumber)
	}
	if refs, err := e.m.MountRefs(d.dev); err != nil || !slices.Contains(refs, target) {
		t.Errorf("MountRefs(device) = %q, %v; want the target file", refs, err)
	}
	if n, err := e.m.DeviceSize(target); err != nil || n != 32*mib {
		t.Errorf("DeviceSize(target) = %d, %v", n, err)
	}
	// What a pod writes to the target lands on the disk.
	f, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("raw!"), 4096)
	f.Sync()
	f.Close()
	g, _ := os.Open(d.dev)
	buf := make([]byte, 4)
	g.ReadAt(buf, 4096)
	g.Close()
	if string(buf) != "raw!" {
		t.Errorf("device reads %q, want what was written through the target", buf)
	}
	if err := e.m.Unmount(target, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target still there: %v", err)
	}
	if err := e.m.Unmount(target, true); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
}

// TestRealReadOnlyFilesystem: a filesystem the kernel made read-only shows
// as FSReadOnly on a read-write mount (what VolumeCondition reports).
func TestRealReadOnlyFilesystem(t *testing.T) {
	e := newRealEnv(t)
	d := e.disk(t, 64*mib)
	staging := e.path(t, "staging")
	if err := e.m.FormatAndMount(e.ctx, d.dev, staging, "", nil); err != nil {
		t.Fatal(err)
	}
	// As ext4's errors=remount-ro does: the superblock goes read-only.
	if err := unix.Mount("", staging, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	info, err := e.m.Inspect(staging)
	if err != nil || !info.Mounted || !info.FSReadOnly {
		t.Errorf("Inspect = %+v, %v; want FSReadOnly", info, err)
	}
	if info.ReadOnly {
		t.Logf("note: the mount itself also shows read-only: %+v", info)
	}
}

func TestRealFindDeviceMissing(t *testing.T) {
	e := newRealEnv(t)
	e.m.opts.DeviceWait = 300 * time.Millisecond
	start := time.Now()
	_, err := e.m.FindDevice(e.ctx, e.byID, "6000c29d000000000000000000000000")
	if !errors.Is(err, ErrDeviceNotFound) {
		t.Fatalf("FindDevice of a missing disk = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("gave up after %s, want about 300ms", el)
	}
}
