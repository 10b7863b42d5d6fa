package walkthrough

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
)

const gib = int64(1) << 30

// TestExpandExt4Offline: a 5Gi ext4 volume in use is grown to 8Gi through
// CNS while attached and mounted; the filesystem grows when the volume is
// next staged, and df inside the staged mount shows 8Gi with the data.
//
// Why offline: growing a *mounted* ext4 (resize2fs online, the
// EXT4_IOC_RESIZE_FS ioctl) needs CAP_SYS_RESOURCE, which the machines
// this runs on lack. NodeExpandVolume is still called while mounted: where
// the capability exists it grows the filesystem there and then (asserted);
// where it does not, it must fail with FailedPrecondition naming the
// capability, and the grow happens at the next stage, which is what a pod
// restart does in Kubernetes. The online path is tested with xfs below.
func TestExpandExt4Offline(t *testing.T) {
	e := newCSIEnv(t, app.Config{})
	v := e.create("expand-ext4", 5*gib, mountCap("ext4"), nil)
	e.attach(v)
	writeFile(t, filepath.Join(v.target, "data.txt"), Payload)
	size, df := dfSize(t, v.staging)
	t.Logf("before: %s", df)
	if size > 5*gib || size < 4*gib {
		t.Fatalf("a 5Gi ext4 volume shows %d bytes", size)
	}

	start := time.Now()
	r, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * gib}, VolumeCapability: v.cap})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ControllerExpandVolume 5Gi -> 8Gi, attached: %v", time.Since(start).Round(time.Millisecond))
	if r.GetCapacityBytes() != 8*gib || !r.GetNodeExpansionRequired() {
		t.Fatalf("ControllerExpandVolume = %v; want 8Gi and node expansion required", r)
	}
	grown := false
	_, err = e.node.NodeExpandVolume(e.ctx, &csi.NodeExpandVolumeRequest{
		VolumeId: v.id, VolumePath: v.target, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * gib}, VolumeCapability: v.cap})
	switch {
	case err == nil:
		grown = true
		t.Log("this machine grows a mounted ext4 (it has CAP_SYS_RESOURCE): grown online")
	case codeOf(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "CAP_SYS_RESOURCE"):
		t.Logf("online ext4 grow refused here, as expected without CAP_SYS_RESOURCE: %v", err)
	default:
		t.Fatalf("NodeExpandVolume on a mounted ext4: %v", err)
	}
	if !grown {
		e.unmount(v)
		e.attach(v) // stage again: the filesystem grows before it is mounted
	}
	size, df = dfSize(t, v.staging)
	t.Logf("after: %s", df)
	if size <= 7*gib || size > 8*gib {
		t.Errorf("after growing to 8Gi the staged ext4 shows %d bytes (%.2f GiB)", size, float64(size)/float64(gib))
	}
	if got, ok := readFile(t, filepath.Join(v.target, "data.txt")); !ok || got != Payload {
		t.Errorf("data after the grow: %q, %v", got, ok)
	}

	// Shrinking is refused; the same size again is success.
	if _, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: 6 * gib}}); codeOf(err) != codes.OutOfRange {
		t.Errorf("shrink to 6Gi: %v; want OutOfRange", err)
	}
	if r, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * gib}}); err != nil || r.GetCapacityBytes() != 8*gib {
		t.Errorf("expand to the size it has: %v, %v", r, err)
	}
}

// TestExpandXFSOnline: xfs grows while mounted (xfs_growfs needs no
// CAP_SYS_RESOURCE): controller expand, then node expand on the pod's path.
func TestExpandXFSOnline(t *testing.T) {
	e := newCSIEnv(t, app.Config{})
	v := e.create("expand-xfs", 5*gib, mountCap("xfs"), nil)
	e.attach(v)
	writeFile(t, filepath.Join(v.target, "data.txt"), Payload)
	_, df := dfSize(t, v.staging)
	t.Logf("before: %s", df)
	r, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * gib}, VolumeCapability: v.cap})
	if err != nil || !r.GetNodeExpansionRequired() {
		t.Fatalf("ControllerExpandVolume = %v, %v", r, err)
	}
	nr, err := e.node.NodeExpandVolume(e.ctx, &csi.NodeExpandVolumeRequest{
		VolumeId: v.id, VolumePath: v.target, CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * gib}})
	if err != nil {
		t.Fatal(err)
	}
	size, df := dfSize(t, v.target)
	t.Logf("after, still mounted: %s (NodeExpandVolume says %d bytes)", df, nr.GetCapacityBytes())
	if size <= 7*gib || size > 8*gib {
		t.Errorf("after growing to 8Gi the mounted xfs shows %d bytes", size)
	}
	if got, ok := readFile(t, filepath.Join(v.target, "data.txt")); !ok || got != Payload {
		t.Errorf("data after the grow: %q, %v", got, ok)
	}
}

// TestSnapshotRestore: write → snapshot → write more → restore: the
// restored volume holds only what was written before the snapshot. Also:
// a volume with snapshots can't be deleted, and the per-volume limit.
func TestSnapshotRestore(t *testing.T) {
	e := newCSIEnv(t, app.Config{MaxSnapshotsPerVolume: 2})
	src := e.create("snap-src", 1*gib, mountCap("ext4"), nil)
	e.attach(src)
	first, second := "written before the snapshot\n", "written after the snapshot\n"
	writeFile(t, filepath.Join(src.target, "first.txt"), first)

	start := time.Now()
	snap, err := e.ctrl.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: src.id})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CreateSnapshot of an attached 1Gi volume: %v", time.Since(start).Round(time.Millisecond))
	s := snap.GetSnapshot()
	t.Logf("snapshot %s of volume %s, %d bytes, ready %v", s.GetSnapshotId(), s.GetSourceVolumeId(), s.GetSizeBytes(), s.GetReadyToUse())
	if !strings.HasPrefix(s.GetSnapshotId(), src.id+"+") || s.GetSizeBytes() != 1*gib || !s.GetReadyToUse() {
		t.Errorf("snapshot %v", s)
	}
	t.Cleanup(func() {
		if _, err := e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: s.GetSnapshotId()}); err != nil {
			t.Errorf("DeleteSnapshot: %v", err)
		}
	})
	writeFile(t, filepath.Join(src.target, "second.txt"), second)
	writeFile(t, filepath.Join(src.target, "first.txt"), first+second)

	// Restored into a larger volume: it grows at stage.
	start = time.Now()
	restored := e.create("restored", 2*gib, mountCap("ext4"), &csi.VolumeContentSource{
		Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.GetSnapshotId()}}})
	t.Logf("CreateVolume from the snapshot (2Gi): %v", time.Since(start).Round(time.Millisecond))
	e.attach(restored)
	if got, ok := readFile(t, filepath.Join(restored.target, "first.txt")); !ok || got != first {
		t.Errorf("restored first.txt = %q, %v; want %q", got, ok, first)
	}
	if got, ok := readFile(t, filepath.Join(restored.target, "second.txt")); ok {
		t.Errorf("restored volume has second.txt (%q), written after the snapshot", got)
	}
	size, df := dfSize(t, restored.staging)
	t.Logf("restored: %s", df)
	if size <= 1*gib+gib/2 {
		t.Errorf("restored into 2Gi, df shows %d bytes", size)
	}

	// A volume with snapshots can't be deleted (FailedPrecondition).
	e.unmount(src)
	if _, err := e.ctrl.ControllerUnpublishVolume(e.ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: src.id, NodeId: e.vm.UUID}); err != nil {
		t.Fatal(err)
	}
	src.pub = nil
	_, err = e.ctrl.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: src.id})
	if codeOf(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "snapshots") {
		t.Errorf("DeleteVolume of a volume with a snapshot: %v; want FailedPrecondition about its snapshots", err)
	} else {
		t.Logf("DeleteVolume with a snapshot: %v", err)
	}

	// The limit (2 here): the second is fine, the third is refused.
	snap2, err := e.ctrl.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-2", SourceVolumeId: src.id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap2.GetSnapshot().GetSnapshotId()})
	})
	_, err = e.ctrl.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-3", SourceVolumeId: src.id})
	if codeOf(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "max-snapshots-per-volume") {
		t.Errorf("third snapshot with a limit of 2: %v; want FailedPrecondition naming the flag", err)
	} else {
		t.Logf("third snapshot: %v", err)
	}
	list, err := e.ctrl.ListSnapshots(e.ctx, &csi.ListSnapshotsRequest{SourceVolumeId: src.id})
	if err != nil || len(list.GetEntries()) != 2 {
		t.Errorf("ListSnapshots of the volume = %v, %v; want 2", list, err)
	}
}

// TestClone: a clone holds the source's data, and is a volume of its own.
// xfs: the clone has its source's filesystem UUID and is mounted on the
// node that has the source mounted (the node mounts xfs with nouuid).
func TestClone(t *testing.T) {
	e := newCSIEnv(t, app.Config{})
	src := e.create("clone-src", 1*gib, mountCap("xfs"), nil)
	e.attach(src)
	writeFile(t, filepath.Join(src.target, "data.txt"), Payload)
	clone := e.create("clone", 1*gib, mountCap("xfs"), &csi.VolumeContentSource{
		Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.id}}})
	if clone.id == src.id {
		t.Fatal("the clone has the source's ID")
	}
	writeFile(t, filepath.Join(src.target, "later.txt"), "after the clone\n")
	e.attach(clone)
	if got, ok := readFile(t, filepath.Join(clone.target, "data.txt")); !ok || got != Payload {
		t.Errorf("clone's data.txt = %q, %v", got, ok)
	}
	if _, ok := readFile(t, filepath.Join(clone.target, "later.txt")); ok {
		t.Error("the clone has a file written to the source after cloning")
	}
	// The clone's transient snapshot is gone: the source can be deleted.
	list, err := e.ctrl.ListSnapshots(e.ctx, &csi.ListSnapshotsRequest{SourceVolumeId: src.id})
	if err != nil || len(list.GetEntries()) != 0 {
		t.Errorf("snapshots of the cloned volume: %v, %v; want none", list, err)
	}
}

// TestExpandBlock: a raw block volume grows in place while published; no
// node expansion is needed, the device the pod sees is simply larger.
func TestExpandBlock(t *testing.T) {
	e := newCSIEnv(t, app.Config{})
	c := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	v := e.create("expand-block", 1*gib, c, nil)
	e.attach(v)
	r, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: v.id, CapacityRange: &csi.CapacityRange{RequiredBytes: 2*gib + 1}, VolumeCapability: c})
	if err != nil {
		t.Fatal(err)
	}
	want := 2*gib + 1<<20 // rounded up to a whole MiB
	if r.GetCapacityBytes() != want || r.GetNodeExpansionRequired() {
		t.Errorf("ControllerExpandVolume = %v; want %d bytes, no node expansion", r, want)
	}
	out, err := exec.Command("blockdev", "--getsize64", v.target).Output()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); n != want {
		t.Errorf("the published device has %d bytes; want %d", n, want)
	}
}
