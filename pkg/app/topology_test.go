package app

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// TestNodePluginLearnsItsZone: a node plugin given csi-vsphere.conf with
// topology categories (and no controller in the process) reports its VM's
// zone in NodeGetInfo; the controller advertises accessibility constraints.
func TestNodePluginLearnsItsZone(t *testing.T) {
	ctx := context.Background()
	s := simtest.Start(t, sim.Options{NodeVMs: 1, ZoneBNodeVMs: 1})
	ini := s.ConfigINI("test-cluster", true)
	cfg, err := config.Parse(strings.NewReader(ini), "test")
	if err != nil {
		t.Fatal(err)
	}
	var vm sim.NodeVM
	for _, v := range s.NodeVMs() {
		if v.Zone == sim.ZoneB {
			vm = v
		}
	}
	d, closeAll, err := New(ctx, Config{Mode: driver.ModeNode, NodeID: vm.UUID, ByIDDir: vm.ByIDDir}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	info, err := d.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := info.GetAccessibleTopology().GetSegments()
	if got[driver.TopologyKeyPrefix+sim.ZoneCategory] != sim.ZoneB || got[driver.TopologyKeyPrefix+sim.RegionCategory] != sim.Region {
		t.Fatalf("node %s reports %v, want zone-b in region-1", vm.Name, got)
	}

	ctrl, closeCtrl, err := New(ctx, Config{Mode: driver.ModeController}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeCtrl()
	caps, err := ctrl.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range caps.GetCapabilities() {
		found = found || c.GetService().GetType() == csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS
	}
	if !found {
		t.Errorf("controller with topology categories does not advertise VOLUME_ACCESSIBILITY_CONSTRAINTS: %v", caps)
	}

	// Without categories: no topology, no lookup.
	plain, err := config.Parse(strings.NewReader(s.ConfigINI("test-cluster", false)), "test")
	if err != nil {
		t.Fatal(err)
	}
	d2, close2, err := New(ctx, Config{Mode: driver.ModeNode, NodeID: vm.UUID, ByIDDir: vm.ByIDDir}, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	if info, _ := d2.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{}); info.GetAccessibleTopology() != nil {
		t.Errorf("topology %v without categories", info.GetAccessibleTopology())
	}
}
