package sim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("hypervisor tests need root (losetup)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not found")
	}
}

// loopsOf lists the loop devices backing files under dir.
func loopsOf(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("losetup -a: %v: %s", err, out)
	}
	var devs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			devs = append(devs, strings.SplitN(line, ":", 2)[0])
		}
	}
	return devs
}

func blockSize(t *testing.T, dev string) int64 {
	t.Helper()
	out, err := exec.Command("blockdev", "--getsize64", dev).Output()
	if err != nil {
		t.Fatalf("blockdev %s: %v", dev, err)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return n
}

func TestHypervisorAttachDetach(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	needRoot(t)
	dir := t.TempDir()
	s, err := Start(context.Background(), Options{Dir: dir, Hypervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	c := connect(t, s)
	node := s.NodeVMs()[1]
	id := mustCreate(t, c, createSpec("hv", 64, "", dsRef(t, s, "vsanDatastore")))
	uuid, f := attach(t, c, id, vmRef(node))
	if f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	link := filepath.Join(node.ByIDDir, "wwn-0x"+uuid)
	dev, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatalf("by-id link %s: %v", link, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		t.Fatalf("%s -> %s is not a block device (%v)", link, dev, err)
	}
	if got := blockSize(t, dev); got != 64<<20 {
		t.Errorf("device size %d, want %d", got, 64<<20)
	}
	if loops := loopsOf(t, dir); len(loops) != 1 || loops[0] != dev {
		t.Errorf("loop devices on our files %v, want [%s]", loops, dev)
	}

	// Extend grows the device (losetup -c).
	task, err := c.cns.ExtendVolume(context.Background(), []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 128}})
	if f := faultOf(result(t, task, err)); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	if got := blockSize(t, dev); got != 128<<20 {
		t.Errorf("device size after extend %d, want %d", got, 128<<20)
	}

	// Detach removes the link and the loop device.
	if f := detach(t, c, id, vmRef(node)); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("link still there after detach: %v", err)
	}
	if loops := loopsOf(t, dir); len(loops) != 0 {
		t.Errorf("loop devices left after detach: %v", loops)
	}

	// Close removes whatever is still attached.
	id2 := mustCreate(t, c, createSpec("hv2", 32, "", dsRef(t, s, "silver-ds")))
	uuid2, f := attach(t, c, id2, vmRef(s.NodeVMs()[0]))
	if f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	link2 := filepath.Join(s.NodeVMs()[0].ByIDDir, "wwn-0x"+uuid2)
	dev2, err := filepath.EvalSymlinks(link2)
	if err != nil {
		t.Fatalf("second link: %v", err)
	}
	// What a node plugin would have made of it: a filesystem, mounted, and
	// bind-mounted into a pod. Close must not leave them behind.
	if out, err := exec.Command("mkfs.ext4", "-q", dev2).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v: %s", err, out)
	}
	staging, pod := filepath.Join(t.TempDir(), "staging"), filepath.Join(t.TempDir(), "pod volume")
	for _, p := range []string{staging, pod} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(dev2, staging, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(staging, pod, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if points, err := mountsOf(dev2); err != nil || len(points) != 2 {
		t.Fatalf("mounts of %s: %v, %v; want the staging and the pod mount", dev2, points, err)
	}
	closed = true
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Lstat(link2); !os.IsNotExist(err) {
		t.Errorf("link still there after Close: %v", err)
	}
	if loops := loopsOf(t, dir); len(loops) != 0 {
		t.Errorf("loop devices left after Close: %v", loops)
	}
	if points, _ := mountsOf(dev2); len(points) != 0 {
		t.Errorf("mounts left after Close: %v", points)
	}
}
