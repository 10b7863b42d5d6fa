package driver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

func rwxCaps() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}}
}

func rwxReq(name string, params map[string]string) *csi.CreateVolumeRequest {
	req := createReq(name, gib, params)
	req.VolumeCapabilities = rwxCaps()
	return req
}

// TestFileVolumeOfTheSeedsClass: the seed's StorageClass (storagepolicyname
// Gold, nothing else) with a ReadWriteMany claim makes a file volume on the
// vSAN datastore, once per name.
func TestFileVolumeOfTheSeedsClass(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	resp, err := e.d.CreateVolume(ctx, rwxReq("pvc-seed-rwx", gold))
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	if !strings.HasPrefix(v.GetVolumeId(), "file:") || v.GetVolumeContext()["type"] != "vSphere CNS File Volume" {
		t.Fatalf("volume %s %v", v.GetVolumeId(), v.GetVolumeContext())
	}
	if ds := e.datastoreByURL(t, v.GetVolumeContext()["datastoreurl"]); ds.Name != "vsanDatastore" {
		t.Errorf("the share is on %s, want vsanDatastore", ds.Name)
	}
	again, err := e.d.CreateVolume(ctx, rwxReq("pvc-seed-rwx", gold))
	if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() {
		t.Fatalf("the same request again: %v %v, want %s", again, err, v.GetVolumeId())
	}
	if n := len(e.sim.Shares()); n != 1 {
		t.Errorf("%d shares, want 1", n)
	}
	// The name is taken by a file volume: a block volume can't have it.
	_, err = e.d.CreateVolume(ctx, createReq("pvc-seed-rwx", gib, gold))
	wantCode(t, err, codes.AlreadyExists, "file volume")

	// GetCapacity for ReadWriteMany counts the datastores that take shares.
	capReq := &csi.GetCapacityRequest{VolumeCapabilities: rwxCaps(), Parameters: gold}
	got, err := e.d.GetCapacity(ctx, capReq)
	if err != nil {
		t.Fatal(err)
	}
	var vsanFree int64
	for _, ds := range e.sim.Datastores() {
		if ds.Name == "vsanDatastore" {
			vsanFree = ds.FreeBytes
		}
	}
	if got.GetAvailableCapacity() != vsanFree || got.GetMaximumVolumeSize().GetValue() != vsanFree {
		t.Errorf("RWX capacity %d (largest %d), want vsanDatastore's %d", got.GetAvailableCapacity(), got.GetMaximumVolumeSize().GetValue(), vsanFree)
	}
}

// TestFileVolumeRefusalsSayWhy: no datastore can take the share: the
// answer is FailedPrecondition naming each datastore and why.
func TestFileVolumeRefusalsSayWhy(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	if err := e.sim.SetFileService(sim.ZoneA, false); err != nil {
		t.Fatal(err)
	}
	_, err := e.d.CreateVolume(ctx, rwxReq("pvc-fs-off", gold))
	wantCode(t, err, codes.FailedPrecondition, "vsanDatastore: vSAN File Service is not enabled on cluster")
	for _, want := range []string{"nfs-gold: not a vSAN datastore", "silver-ds: not a vSAN datastore", "storage policy \"Gold\""} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	if got, _ := e.d.GetCapacity(ctx, &csi.GetCapacityRequest{VolumeCapabilities: rwxCaps()}); got.GetAvailableCapacity() != 0 {
		t.Errorf("RWX capacity with File Service off: %d, want 0", got.GetAvailableCapacity())
	}
	// Block volumes don't care.
	if _, err := e.d.CreateVolume(ctx, createReq("pvc-block-still", gib, gold)); err != nil {
		t.Fatalf("a block volume with File Service off: %v", err)
	}
	if err := e.sim.SetFileService(sim.ZoneA, true); err != nil {
		t.Fatal(err)
	}

	// A policy vsanDatastore does not satisfy (the answer is re-read
	// within a minute; this controller reads it anew for the new policy).
	_, err = e.d.CreateVolume(ctx, rwxReq("pvc-local-policy", map[string]string{"storagepolicyname": "Host-local PMem Default Storage Policy"}))
	wantCode(t, err, codes.FailedPrecondition, "vsanDatastore: not compatible with storage policy")

	// datastoreurl honored: a datastore that can't hold shares is refused,
	// the vSAN one is used.
	var nfsURL, vsanURL string
	for _, ds := range e.sim.Datastores() {
		switch ds.Name {
		case "nfs-gold":
			nfsURL = ds.URL
		case "vsanDatastore":
			vsanURL = ds.URL
		}
	}
	_, err = e.d.CreateVolume(ctx, rwxReq("pvc-wrong-url", map[string]string{"datastoreurl": nfsURL}))
	wantCode(t, err, codes.FailedPrecondition, "nfs-gold: not a vSAN datastore")
	if !strings.Contains(err.Error(), "vsanDatastore: not the StorageClass's datastoreurl") {
		t.Errorf("the refusal does not say vsanDatastore is not the datastoreurl: %v", err)
	}
	resp, err := e.d.CreateVolume(ctx, rwxReq("pvc-vsan-url", map[string]string{"datastoreurl": vsanURL}))
	if err != nil || resp.GetVolume().GetVolumeContext()["datastoreurl"] != vsanURL {
		t.Fatalf("datastoreurl of the vSAN datastore: %v %v", resp, err)
	}

	// A ReadWriteMany volume from a block volume's clone: refused, nothing made.
	block, err := e.d.CreateVolume(ctx, createReq("pvc-block-src", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	clone := rwxReq("pvc-rwx-clone", gold)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: block.GetVolume().GetVolumeId()}}}
	_, err = e.d.CreateVolume(ctx, clone)
	wantCode(t, err, codes.InvalidArgument, "can't be made from a volume")
	before := len(e.sim.Volumes())
	xfs := rwxReq("pvc-rwx-xfs", map[string]string{"csi.storage.k8s.io/fstype": "xfs"})
	_, err = e.d.CreateVolume(ctx, xfs)
	wantCode(t, err, codes.InvalidArgument, "nfs4")
	if len(e.sim.Volumes()) != before {
		t.Errorf("refused requests made volumes: %v", e.sim.Volumes())
	}
}

// TestFileVolumeInZones: the share goes on the vSAN datastore of the zone
// the topology asks for (each zone's cluster has its own), and is accessible
// from every zone (no accessible topology: nodes mount it over NFS; the PV
// gets no node affinity, so pods of one claim run in both zones); with that
// cluster's File Service off, the refusal says so and that the other
// zone's datastore is out of reach.
func TestFileVolumeInZones(t *testing.T) {
	z := newZoned(t)
	ctx := context.Background()
	in := func(name, zone string) *csi.CreateVolumeRequest {
		req := rwxReq(name, gold)
		req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{segment(zone)}, Preferred: []*csi.Topology{segment(zone)}}
		return req
	}
	for zone, ds := range map[string]string{sim.ZoneA: "vsanDatastore", sim.ZoneB: "zone-b-ds"} {
		resp, err := z.d.CreateVolume(ctx, in("pvc-rwx-"+zone, zone))
		if err != nil {
			t.Fatal(err)
		}
		if got := z.datastoreByURL(t, resp.GetVolume().GetVolumeContext()["datastoreurl"]).Name; got != ds {
			t.Errorf("%s: the share is on %s, want %s", zone, got, ds)
		}
		if segs := resp.GetVolume().GetAccessibleTopology(); len(segs) != 0 {
			t.Errorf("%s: accessible topology %v, want none (every zone mounts the share)", zone, segs)
		}
	}
	if err := z.sim.SetFileService(sim.ZoneB, false); err != nil {
		t.Fatal(err)
	}
	_, err := z.d.CreateVolume(ctx, in("pvc-rwx-b-off", sim.ZoneB))
	wantCode(t, err, codes.FailedPrecondition, "zone-b-ds: vSAN File Service is not enabled on cluster cluster-zone-b")
	if !strings.Contains(err.Error(), "vsanDatastore: not reachable from the node VMs") {
		t.Errorf("the refusal does not say vsanDatastore is out of zone B: %v", err)
	}
}

// TestPublishFileVolume: ControllerPublish gives the share's NFSv4.1
// access point, ControllerUnpublish makes no vCenter call, and wrong
// requests get precise codes.
func TestPublishFileVolume(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	resp, err := e.d.CreateVolume(ctx, rwxReq("pvc-publish-rwx", gold))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	vms := e.sim.NodeVMs()
	pub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: vms[0].UUID, VolumeCapability: rwxCaps()[0]})
	if err != nil {
		t.Fatal(err)
	}
	want := e.sim.Shares()[0].AccessPoints[sim.AccessPointNFSv41]
	if got := pub.GetPublishContext()[driver.PublishContextNFSv4AccessPoint]; got != want || !strings.HasSuffix(got, ":/vsanfs/pvc-publish-rwx") {
		t.Errorf("publish context %v, want %s=%s", pub.GetPublishContext(), driver.PublishContextNFSv4AccessPoint, want)
	}
	if _, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: vms[1].UUID, VolumeCapability: rwxCaps()[0]}); err != nil {
		t.Fatal(err)
	}
	got, err := e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil || len(got.GetStatus().GetPublishedNodeIds()) != 2 {
		t.Errorf("published nodes %v %v, want both", got.GetStatus().GetPublishedNodeIds(), err)
	}
	if n := len(e.sim.Volumes()); n != 1 || e.sim.Volumes()[0].VM != "" {
		t.Errorf("volumes %v: a file volume is never attached", e.sim.Volumes())
	}

	before := e.calls.Count()
	if _, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: vms[0].UUID}); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.Count() - before; n != 0 {
		t.Errorf("unpublishing a file volume made %d vCenter calls, want none", n)
	}
	got, _ = e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if ids := got.GetStatus().GetPublishedNodeIds(); len(ids) != 1 || ids[0] != vms[1].UUID {
		t.Errorf("published nodes after unpublishing node 1: %v", ids)
	}

	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: vms[0].UUID, VolumeCapability: block})
	wantCode(t, err, codes.InvalidArgument, "raw block")
	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "file:00000000-0000-0000-0000-000000000000", NodeId: vms[0].UUID, VolumeCapability: rwxCaps()[0]})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "42000000-0000-0000-0000-000000000000", VolumeCapability: rwxCaps()[0]})
	wantCode(t, err, codes.NotFound, "")
	// A block volume asked to be shared.
	bv, err := e.d.CreateVolume(ctx, createReq("pvc-block", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: bv.GetVolume().GetVolumeId(), NodeId: vms[0].UUID, VolumeCapability: rwxCaps()[0]})
	wantCode(t, err, codes.InvalidArgument, "for file volumes")

	// Validate: a file volume takes multi-node mount capabilities, a block one does not.
	val, err := e.d.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: rwxCaps()})
	if err != nil || val.GetConfirmed() == nil {
		t.Errorf("validate RWX on a file volume: %v %v", val, err)
	}
	val, err = e.d.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: bv.GetVolume().GetVolumeId(), VolumeCapabilities: rwxCaps()})
	if err != nil || val.GetConfirmed() != nil || !strings.Contains(val.GetMessage(), "block volume") {
		t.Errorf("validate RWX on a block volume: %v %v", val, err)
	}

	if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if len(e.sim.Shares()) != 0 {
		t.Errorf("shares after delete: %v", e.sim.Shares())
	}
}

// TestLostReplyOfFileCreateMakesOneShare: the reliability promise holds for
// file volumes: the answer to CnsCreateVolume lost, one share.
func TestLostReplyOfFileCreateMakesOneShare(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": time.Second}}})
	c := newController(t, s)
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsCreateVolume", Fault: sim.FaultLostReply, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := retryLike(t, time.Minute, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
		return c.d.CreateVolume(ctx, rwxReq("pvc-rwx-lost-reply", gold))
	})
	if err != nil {
		t.Fatal(err)
	}
	if sh := s.Shares(); len(sh) != 1 || sh[0].VolumeID != resp.GetVolume().GetVolumeId() {
		t.Fatalf("shares %v after a lost reply, want one: %s", sh, resp.GetVolume().GetVolumeId())
	}
	if got := s.FaultStats()["CnsCreateVolume LostReply"]; got != 1 {
		t.Errorf("the fault did not happen: %v", s.FaultStats())
	}
}
