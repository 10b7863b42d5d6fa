package driver_test

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// TestCloneLeavesNoSnapshot: a clone's transient snapshot never outlives
// the clone, even when the driver stopped between the clone's steps (here:
// the snapshot an interrupted attempt left is made by hand), and a leftover
// never keeps its source from being deleted.
func TestCloneLeavesNoSnapshot(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	src, err := e.d.CreateVolume(ctx, createReq("src", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	srcID := src.GetVolume().GetVolumeId()
	snapshots := func() []string {
		t.Helper()
		res, err := e.d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: srcID})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range res.GetEntries() {
			ids = append(ids, s.GetSnapshot().GetSnapshotId())
		}
		return ids
	}
	leftover := func(clone string) string {
		t.Helper()
		res, err := e.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: srcID, Name: vcenter.CloneSnapshotDescription(clone)})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetSnapshot().GetSnapshotId()
	}
	cloneReq := func(name string) *csi.CreateVolumeRequest {
		r := createReq(name, gib, gold)
		r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: srcID}}}
		return r
	}

	// Interrupted before the clone volume existed: its retry uses the
	// snapshot that attempt left, and deletes it.
	left := leftover("clone-a")
	clone, err := e.d.CreateVolume(ctx, cloneReq("clone-a"))
	if err != nil {
		t.Fatal(err)
	}
	if ids := snapshots(); len(ids) != 0 {
		t.Errorf("snapshots of the source after the clone: %v (the interrupted attempt's was %s), want none", ids, left)
	}

	// Interrupted after the clone volume existed, before its snapshot was
	// deleted: the provisioner's retry finds the volume and the leftover goes.
	left = leftover("clone-a")
	again, err := e.d.CreateVolume(ctx, cloneReq("clone-a"))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetVolume().GetVolumeId() != clone.GetVolume().GetVolumeId() {
		t.Errorf("retried clone: volume %s, want the existing %s", again.GetVolume().GetVolumeId(), clone.GetVolume().GetVolumeId())
	}
	if ids := snapshots(); len(ids) != 0 {
		t.Errorf("snapshots of the source after the retried clone: %v (leftover %s), want none", ids, left)
	}

	// A leftover of another clone next to a VolumeSnapshot's snapshot: the
	// source can't be deleted for the latter, and can once it is gone.
	leftover("clone-b")
	real, err := e.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: srcID, Name: "snapshot-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: srcID})
	wantCode(t, err, codes.FailedPrecondition, "has snapshots")
	if _, err := e.d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: real.GetSnapshot().GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: srcID}); err != nil {
		t.Fatalf("delete of a volume whose only snapshot is a clone's leftover: %v", err)
	}
	if _, err := e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: srcID}); err == nil {
		t.Errorf("source volume %s still there after its delete", srcID)
	}
}
