package driver_test

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node/nodetest"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

var categories = []string{sim.RegionCategory, sim.ZoneCategory}

// zoned is a controller with topology on an embedded vCenter with one node
// VM in zone A and one in zone B.
type zoned struct {
	*env
	a, b sim.NodeVM
	vc   vcenter.Client
}

func newZoned(t *testing.T) *zoned {
	t.Helper()
	ctx := context.Background()
	s := simtest.Start(t, sim.Options{NodeVMs: 1, ZoneBNodeVMs: 1})
	z := &zoned{env: &env{sim: s}}
	for _, vm := range s.NodeVMs() {
		switch vm.Zone {
		case sim.ZoneA:
			z.a = vm
		case sim.ZoneB:
			z.b = vm
		}
	}
	var err error
	z.vc, err = vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: sim.DefaultUsername, Password: sim.DefaultPassword,
		Thumbprint: s.Thumbprint(), ClusterID: "test-cluster", TopologyCategories: categories,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.vc.Close(context.Background()) })
	if z.d, err = driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "test", TopologyCategories: categories}, z.vc, nil); err != nil {
		t.Fatal(err)
	}
	return z
}

func segment(zone string) *csi.Topology {
	return &csi.Topology{Segments: map[string]string{
		driver.TopologyKeyPrefix + sim.RegionCategory: sim.Region,
		driver.TopologyKeyPrefix + sim.ZoneCategory:   zone,
	}}
}

func publishReq(id, node string) *csi.ControllerPublishVolumeRequest {
	return &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: mountRWO()[0]}
}

// TestTopologyPlacementAndPublish: a volume requested for zone B lands on a
// zone-B datastore and says so; publishing it to the zone-A node is refused
// (FailedPrecondition), to the zone-B node it works. Preferred segments
// come first.
func TestTopologyPlacementAndPublish(t *testing.T) {
	z := newZoned(t)
	ctx := context.Background()

	caps, err := z.d.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(caps.GetCapabilities(), func(c *csi.PluginCapability) bool {
		return c.GetService().GetType() == csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS
	}) {
		t.Fatalf("no VOLUME_ACCESSIBILITY_CONSTRAINTS with topology categories: %v", caps)
	}

	req := createReq("pvc-zone-b", gib, gold)
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{segment(sim.ZoneB)}}
	resp, err := z.d.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	v := resp.GetVolume()
	ds := z.datastoreByURL(t, v.GetVolumeContext()["datastoreurl"])
	if ds.Name != "zone-b-ds" {
		t.Fatalf("zone-B Gold volume on %s, want zone-b-ds", ds.Name)
	}
	if len(v.GetAccessibleTopology()) != 1 || !maps.Equal(v.GetAccessibleTopology()[0].GetSegments(), segment(sim.ZoneB).GetSegments()) {
		t.Fatalf("accessible topology %v, want zone B", v.GetAccessibleTopology())
	}
	// The retry finds it, with the same topology.
	again, err := z.d.CreateVolume(ctx, req)
	if err != nil || again.GetVolume().GetVolumeId() != v.GetVolumeId() || len(again.GetVolume().GetAccessibleTopology()) != 1 {
		t.Fatalf("retry: %v, %v", again, err)
	}

	_, err = z.d.ControllerPublishVolume(ctx, publishReq(v.GetVolumeId(), z.a.UUID))
	wantCode(t, err, codes.FailedPrecondition, "zone-b-ds")
	t.Logf("refused: %v", err)
	if _, err := z.d.ControllerPublishVolume(ctx, publishReq(v.GetVolumeId(), z.b.UUID)); err != nil {
		t.Fatalf("publish in zone B: %v", err)
	}

	// Preferred zone A among A and B: zone A's Gold datastores.
	req = createReq("pvc-prefer-a", gib, gold)
	req.AccessibilityRequirements = &csi.TopologyRequirement{
		Requisite: []*csi.Topology{segment(sim.ZoneB), segment(sim.ZoneA)},
		Preferred: []*csi.Topology{segment(sim.ZoneA), segment(sim.ZoneB)},
	}
	resp, err = z.d.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if ds := z.datastoreByURL(t, resp.GetVolume().GetVolumeContext()["datastoreurl"]); ds.Name != "vsanDatastore" && ds.Name != "nfs-gold" {
		t.Fatalf("volume preferring zone A on %s", ds.Name)
	}
	if got := resp.GetVolume().GetAccessibleTopology(); len(got) != 1 || got[0].GetSegments()[driver.TopologyKeyPrefix+sim.ZoneCategory] != sim.ZoneA {
		t.Fatalf("accessible topology %v, want zone A", got)
	}

	// Zone B has no Host-local datastore: clear error naming the segment.
	req = createReq("pvc-local-b", gib, map[string]string{"storagepolicyname": "Host-local PMem Default Storage Policy"})
	req.AccessibilityRequirements = &csi.TopologyRequirement{Requisite: []*csi.Topology{segment(sim.ZoneB)}}
	_, err = z.d.CreateVolume(ctx, req)
	wantCode(t, err, codes.InvalidArgument, "k8s-zone=zone-b")

	// No requirements: any segment will do.
	if _, err := z.d.CreateVolume(ctx, createReq("pvc-anywhere", gib, gold)); err != nil {
		t.Fatal(err)
	}
}

// TestNodeGetInfoTopology: the node reports the segment it learned, with
// the upstream keys; without one, none.
func TestNodeGetInfoTopology(t *testing.T) {
	z := newZoned(t)
	ctx := context.Background()
	vm, err := z.vc.NodeVM(ctx, z.b.UUID)
	if err != nil {
		t.Fatal(err)
	}
	n, err := driver.NewDriver(driver.Options{Mode: driver.ModeNode, NodeID: z.b.UUID, NodeTopology: vm.Topology}, nil, nodetest.NewFake(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	info, err := n.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(info.GetAccessibleTopology().GetSegments(), segment(sim.ZoneB).GetSegments()) {
		t.Fatalf("NodeGetInfo topology %v, want zone B", info.GetAccessibleTopology())
	}
	plain, _ := driver.NewDriver(driver.Options{Mode: driver.ModeNode, NodeID: z.b.UUID}, nil, nodetest.NewFake(t.TempDir()))
	if info, _ := plain.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{}); info.GetAccessibleTopology() != nil {
		t.Fatalf("topology %v without one learned", info.GetAccessibleTopology())
	}
}

// TestGetCapacityWithZones (issue 15's bug): with zones on, GetCapacity
// counts the datastores placement would use: those of the segment asked
// about (zone-local ones included), or of any segment when none is asked.
// It used to count only datastores reachable from every node VM, so zones
// reported none of their own.
func TestGetCapacityWithZones(t *testing.T) {
	z := newZoned(t)
	free := map[string]int64{}
	for _, ds := range z.sim.Datastores() {
		if slices.Contains(ds.Policies, "Gold") {
			free[ds.Name] = ds.FreeBytes
		}
	}
	capacity := func(seg *csi.Topology) int64 {
		t.Helper()
		resp, err := z.d.GetCapacity(context.Background(), &csi.GetCapacityRequest{
			Parameters: map[string]string{"storagepolicyname": "Gold"}, AccessibleTopology: seg,
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetAvailableCapacity()
	}
	// Gold: vsanDatastore and nfs-gold in zone A, zone-b-ds in zone B.
	if got, want := capacity(segment(sim.ZoneB)), free["zone-b-ds"]; got != want || want == 0 {
		t.Errorf("zone B: %d, want zone-b-ds's %d", got, want)
	}
	if got, want := capacity(segment(sim.ZoneA)), free["vsanDatastore"]+free["nfs-gold"]; got != want {
		t.Errorf("zone A: %d, want %d", got, want)
	}
	if got, want := capacity(nil), free["vsanDatastore"]+free["nfs-gold"]+free["zone-b-ds"]; got != want {
		t.Errorf("no segment: %d, want every zone's %d", got, want)
	}
}
