package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
)

// TestNodeRealLoopDevice runs the node service on the real mounter over a
// loop device: stage (mkfs.ext4), publish, write, unpublish, unstage, stage
// again, and the data is there. Needs root (CI runs as root).
func TestNodeRealLoopDevice(t *testing.T) {
	r := newRealDisk(t, 5*gi)
	dir, uuid, d := r.dir, r.uuid, r.d
	staging, target, other := filepath.Join(dir, "staging"), filepath.Join(dir, "pods", "a"), filepath.Join(dir, "pods", "b")
	os.Mkdir(staging, 0o750)
	unmountAtEnd(t, other, target, staging)
	ctx := context.Background()
	var err error
	rwop := mountCap("")
	rwop.AccessMode.Mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	stage := &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: staging, VolumeCapability: rwop,
		PublishContext: map[string]string{PublishContextDiskUUID: uuid}}
	pub := &csi.NodePublishVolumeRequest{VolumeId: "v", StagingTargetPath: staging, TargetPath: target, VolumeCapability: rwop,
		PublishContext: stage.PublishContext}

	start := time.Now()
	if _, err := d.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	t.Logf("NodeStageVolume of a blank 5 GiB disk (mkfs.ext4 + mount): %s", time.Since(start))
	for range 2 {
		if _, err := d.NodeStageVolume(ctx, stage); err != nil {
			t.Fatalf("stage again: %v", err)
		}
		if _, err := d.NodePublishVolume(ctx, pub); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	// ReadWriteOncePod: no second target.
	second := &csi.NodePublishVolumeRequest{VolumeId: "v", StagingTargetPath: staging, TargetPath: other, VolumeCapability: rwop,
		PublishContext: stage.PublishContext}
	_, err = d.NodePublishVolume(ctx, second)
	wantCode(t, err, codes.FailedPrecondition, "already published at "+target)

	st, err := d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: target})
	if err != nil || st.GetVolumeCondition().GetAbnormal() || len(st.Usage) != 2 || st.Usage[0].Total < 4*gi {
		t.Errorf("stats: %v, %v", st, err)
	}
	// Unstage while still published: refused, the pod's mount and data intact.
	_, err = d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: staging})
	wantCode(t, err, codes.FailedPrecondition, "still published at "+target)
	if b, err := os.ReadFile(filepath.Join(target, "data")); err != nil || string(b) != "kept" {
		t.Fatalf("the published data after a refused unstage: %q, %v", b, err)
	}
	if _, err := d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target after unpublish: %v", err)
	}
	_, err = d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: target})
	wantCode(t, err, codes.NotFound)
	st, err = d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: staging})
	if err != nil || !st.GetVolumeCondition().GetAbnormal() {
		t.Errorf("stats of the unstaged path: %v, %v; want an abnormal condition", st, err)
	}

	// Staged again: the data is there, and another writer may publish now.
	if _, err := d.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodePublishVolume(ctx, second); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(other, "data")); err != nil || string(b) != "kept" {
		t.Errorf("data after unstage and stage: %q, %v", b, err)
	}
	d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: other})
	d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: staging})
}

// TestNodeRealDeviceComesBack: real loop devices and mounts. A staged disk
// comes back under a new device (its link moved to a second loop device
// over the same image, as a hot-removed SCSI disk reappears as /dev/sdX
// under another name): NodeStage notices that the staging mount's device
// is no attached disk's, unmounts it and stages the new device, not
// formatting it; the data is there. Before, it answered AlreadyExists.
func TestNodeRealDeviceComesBack(t *testing.T) {
	r := newRealDisk(t, 1*gi)
	uuid, d := r.uuid, r.d
	staging := filepath.Join(r.dir, "staging")
	os.Mkdir(staging, 0o750)
	unmountAtEnd(t, staging)
	ctx := context.Background()
	stage := &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: staging, VolumeCapability: mountCap("ext4"),
		PublishContext: map[string]string{PublishContextDiskUUID: uuid}}
	if _, err := d.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	unix.Sync()

	// The disk comes back as another device; the old one stays mounted.
	second := r.attach(t)
	if _, err := d.NodeStageVolume(ctx, stage); err != nil {
		t.Fatalf("stage after the device changed: %v", err)
	}
	info, err := d.mounter.Inspect(staging)
	if err != nil || !info.Mounted || info.Source != second {
		t.Fatalf("staging mount %+v, %v; want %s", info, err, second)
	}
	if b, err := os.ReadFile(filepath.Join(staging, "data")); err != nil || string(b) != "kept" {
		t.Errorf("data after staging the new device: %q, %v", b, err)
	}
	if refs, _ := d.mounter.MountRefs(staging); len(refs) != 0 {
		t.Errorf("other mounts of the staged filesystem: %v", refs)
	}
	if _, err := d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestNodeRealBlockUnstageWhilePublished: a raw block volume on a real
// loop device: its unstage is refused while the device is bound at the
// pod's target, and goes once unpublished.
func TestNodeRealBlockUnstageWhilePublished(t *testing.T) {
	r := newRealDisk(t, 64<<20)
	uuid, d := r.uuid, r.d
	staging, target := filepath.Join(r.dir, "staging"), filepath.Join(r.dir, "pods", "dev")
	os.Mkdir(staging, 0o750)
	unmountAtEnd(t, target)
	ctx := context.Background()
	pc := map[string]string{PublishContextDiskUUID: uuid}
	if _, err := d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: staging, VolumeCapability: blockCap(), PublishContext: pc}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "v", StagingTargetPath: staging, TargetPath: target, VolumeCapability: blockCap(), PublishContext: pc}); err != nil {
		t.Fatal(err)
	}
	unstage := &csi.NodeUnstageVolumeRequest{VolumeId: "v", StagingTargetPath: staging}
	_, err := d.NodeUnstageVolume(ctx, unstage)
	wantCode(t, err, codes.FailedPrecondition, "still published at "+target)
	if _, err := d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NodeUnstageVolume(ctx, unstage); err != nil {
		t.Fatalf("unstage once unpublished: %v", err)
	}
}

// realDisk is a disk image on real loop devices with its wwn-0x link in a
// by-id directory, as the hypervisor presents an attached disk, and a
// node service on the real mounter (root only; not in -short).
type realDisk struct {
	dir, byID, img, uuid, link string
	d                          *Driver
}

func newRealDisk(t *testing.T, size int64) *realDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts")
	}
	if testing.Short() {
		t.Skip("real loop devices and mkfs: not in -short (make unit); make test runs it")
	}
	r := &realDisk{dir: t.TempDir()}
	r.byID, r.img = filepath.Join(r.dir, "by-id"), filepath.Join(r.dir, "disk.img")
	os.Mkdir(r.byID, 0o755)
	os.WriteFile(r.img, nil, 0o600)
	os.Truncate(r.img, size)
	b := make([]byte, 16)
	rand.Read(b)
	r.uuid = hex.EncodeToString(b)
	r.link = filepath.Join(r.byID, "wwn-0x"+r.uuid)
	r.attach(t)
	var err error
	if r.d, err = NewDriver(Options{Mode: ModeNode, NodeID: "n", ByIDDir: r.byID}, nil, node.New(node.Options{DeviceWait: 2 * time.Second})); err != nil {
		t.Fatal(err)
	}
	return r
}

// attach puts the image on a new loop device and points the disk's link
// at it (the disk appears, or comes back under another name); it returns
// the device.
func (r *realDisk) attach(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("losetup", "-f", "--show", r.img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	os.Remove(r.link)
	if err := os.Symlink(dev, r.link); err != nil {
		t.Fatal(err)
	}
	return dev
}

// unmountAtEnd unmounts whatever the test left mounted at paths.
func unmountAtEnd(t *testing.T, paths ...string) {
	for _, p := range paths {
		t.Cleanup(func() {
			for unix.Unmount(p, 0) == nil {
			}
		})
	}
}
