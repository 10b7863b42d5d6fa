package driver_test

import (
	"context"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/vcentertest"
)

// The fast tier: handler logic against vcentertest.Fake, no vCenter. These
// run in milliseconds and in `make unit`.

func newUnit(t *testing.T) (*driver.Driver, *vcentertest.Fake) {
	t.Helper()
	t.Parallel()
	f := vcentertest.NewFake()
	f.Pols = append(f.Pols, vcenter.Policy{ID: "policy-silver", Name: "Silver"})
	f.Compatible["policy-silver"] = []string{"ds-other"}
	d, err := driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "unit"}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, f
}

// TestUnitPlacementUsesCompatibleDatastores: the candidates the driver
// sends are the policy's, most free first; the fake, unlike vCenter, would
// take an incompatible one, so a placement bug shows here.
func TestUnitPlacementUsesCompatibleDatastores(t *testing.T) {
	d, f := newUnit(t)
	resp, err := d.CreateVolume(context.Background(), createReq("pvc-unit-place", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVolume().GetVolumeContext()["datastoreurl"]; got != "ds:///vmfs/volumes/big/" {
		t.Errorf("placed on %s, want big (Gold-compatible, the most free; other has more but is not Gold)", got)
	}
	if f.LastSpec.DatastoreIDs[0] != "ds-big" || len(f.LastSpec.DatastoreIDs) != 2 || f.LastSpec.DatastoreIDs[1] != "ds-small" {
		t.Errorf("candidates %v, want [ds-big ds-small]: only Gold-compatible ones, most free first", f.LastSpec.DatastoreIDs)
	}
	// Too big for what is free on Gold's datastores, though "other" has room.
	_, err = d.CreateVolume(context.Background(), createReq("pvc-unit-huge", 1500*gib, gold))
	wantCode(t, err, codes.ResourceExhausted, "Gold")
}

// TestUnitSameNameOtherRequest: a name already made answers the same
// volume to the same request and AlreadyExists to another policy or size.
func TestUnitSameNameOtherRequest(t *testing.T) {
	d, f := newUnit(t)
	ctx := context.Background()
	first, err := d.CreateVolume(ctx, createReq("pvc-unit-name", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.CreateVolume(ctx, createReq("pvc-unit-name", gib, gold))
	if err != nil || again.GetVolume().GetVolumeId() != first.GetVolume().GetVolumeId() {
		t.Fatalf("the same request again: %v %v", again, err)
	}
	_, err = d.CreateVolume(ctx, createReq("pvc-unit-name", gib, map[string]string{"storagepolicyname": "Silver"}))
	wantCode(t, err, codes.AlreadyExists, "another storage policy")
	_, err = d.CreateVolume(ctx, createReq("pvc-unit-name", 2*gib, gold))
	wantCode(t, err, codes.AlreadyExists, "capacity range")
	if n := f.VolumeCount(); n != 1 {
		t.Errorf("%d volumes, want 1", n)
	}
}

// TestUnitFileVolumePublish: a file volume's publish hands out the NFSv4.1
// access point and its unpublish makes no vCenter call.
func TestUnitFileVolumePublish(t *testing.T) {
	d, f := newUnit(t)
	f.FileSupport = map[string]string{"ds-big": "", "ds-small": "vSAN File Service is not enabled on cluster c1"}
	ctx := context.Background()
	resp, err := d.CreateVolume(ctx, rwxReq("pvc-unit-rwx", gold))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	if f.LastSpec.File == nil || len(f.LastSpec.DatastoreIDs) != 1 || f.LastSpec.DatastoreIDs[0] != "ds-big" {
		t.Fatalf("spec %+v: want a file volume on ds-big only", f.LastSpec)
	}
	node := f.VMs[0].UUID
	pub, err := d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: rwxCaps()[0]})
	if err != nil || pub.GetPublishContext()[driver.PublishContextNFSv4AccessPoint] != "10.0.0.1:/vsanfs/pvc-unit-rwx" {
		t.Fatalf("publish: %v %v", pub, err)
	}
	before := f.CallCount()
	if _, err := d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node}); err != nil {
		t.Fatal(err)
	}
	if n := f.CallCount() - before; n != 0 {
		t.Errorf("unpublish of a file volume made %d calls, want 0", n)
	}
	// No File Service anywhere Gold reaches: FailedPrecondition naming each.
	f.FileSupport = nil
	_, err = d.CreateVolume(ctx, rwxReq("pvc-unit-rwx-2", gold))
	wantCode(t, err, codes.FailedPrecondition, "big: not a vSAN datastore")
}

// TestUnitCodes: the codes the CSI spec asks for, from the sentinel errors.
func TestUnitCodes(t *testing.T) {
	d, f := newUnit(t)
	ctx := context.Background()
	vol, err := d.CreateVolume(ctx, createReq("pvc-unit-codes", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	_, err = d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "42ffffff-0000-0000-0000-000000000000", VolumeCapability: mountRWO()[0]})
	wantCode(t, err, codes.NotFound, "")
	if _, err := d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: f.VMs[0].UUID, VolumeCapability: mountRWO()[0]}); err != nil {
		t.Fatal(err)
	}
	_, err = d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: f.VMs[1].UUID, VolumeCapability: mountRWO()[0]})
	wantCode(t, err, codes.FailedPrecondition, "another node VM")
	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.FailedPrecondition, "attached")
	_, err = d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: f.VMs[0].UUID, VolumeCapability: rwxCaps()[0]})
	wantCode(t, err, codes.InvalidArgument, "for file volumes")
	if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "00000000-dead-4000-8000-000000000000"}); err != nil {
		t.Errorf("deleting a volume that is gone: %v, want success", err)
	}
	_, err = d.CreateVolume(ctx, createReq("pvc-unit-nopolicy", gib, map[string]string{"storagepolicyname": "Platinum"}))
	wantCode(t, err, codes.InvalidArgument, "Gold")
}

// TestUnitListSnapshotsTokenPastTheEnd: a starting_token beyond the last
// snapshot is not one the driver gave out: Aborted, as ListVolumes
// answers it; the driver's own tokens page through every snapshot.
func TestUnitListSnapshotsTokenPastTheEnd(t *testing.T) {
	d, _ := newUnit(t)
	ctx := context.Background()
	vol, err := d.CreateVolume(ctx, createReq("pvc-unit-snaps", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	for _, name := range []string{"snap-a", "snap-b", "snap-c"} {
		if _, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: id}); err != nil {
			t.Fatal(err)
		}
	}
	seen, token := 0, ""
	for range 4 {
		page, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: 2, StartingToken: token})
		if err != nil {
			t.Fatalf("page at %q: %v", token, err)
		}
		seen += len(page.GetEntries())
		if token = page.GetNextToken(); token == "" {
			break
		}
	}
	if seen != 3 {
		t.Errorf("pages held %d snapshots, want 3", seen)
	}
	_, err = d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{StartingToken: "7"})
	wantCode(t, err, codes.Aborted, "past the last snapshot")
	_, err = d.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "7"})
	wantCode(t, err, codes.Aborted, "past the last volume")
}

// TestUnitSnapshotLimitsByDatastoreType: csi-vsphere.conf's [Snapshot]
// limits as the upstream driver reads them: a volume on a vSAN datastore
// takes granular-max-snapshots-per-block-volume-vsan, others the global
// limit.
func TestUnitSnapshotLimitsByDatastoreType(t *testing.T) {
	t.Parallel()
	f := vcentertest.NewFake()
	f.Stores = append(f.Stores, vcenter.Datastore{ID: "ds-vsan", Name: "vsanDatastore", URL: "ds:///vmfs/volumes/vsan:52aa/",
		CapacityBytes: 1 << 42, FreeBytes: 1 << 41, Reachable: true})
	f.Pols = append(f.Pols, vcenter.Policy{ID: "policy-vsan", Name: "vSAN Default Storage Policy"})
	f.Compatible["policy-vsan"] = []string{"ds-vsan"}
	d, err := driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "unit", MaxSnapshotsPerVolume: 2, MaxSnapshotsVSAN: 1}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	snap := func(vol, name string) error {
		_, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: vol})
		return err
	}
	onVSAN, err := d.CreateVolume(ctx, createReq("pvc-on-vsan", gib, map[string]string{"storagepolicyname": "vSAN Default Storage Policy"}))
	if err != nil {
		t.Fatal(err)
	}
	onVMFS, err := d.CreateVolume(ctx, createReq("pvc-on-vmfs", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	if err := snap(onVSAN.GetVolume().GetVolumeId(), "s-vsan-1"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, snap(onVSAN.GetVolume().GetVolumeId(), "s-vsan-2"), codes.FailedPrecondition, "granular-max-snapshots-per-block-volume-vsan")
	for _, n := range []string{"s-vmfs-1", "s-vmfs-2"} {
		if err := snap(onVMFS.GetVolume().GetVolumeId(), n); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, snap(onVMFS.GetVolume().GetVolumeId(), "s-vmfs-3"), codes.FailedPrecondition, "has 2 snapshots")
}
