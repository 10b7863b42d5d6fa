package vcenter

import (
	"maps"
	"testing"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// TestTopologyFromTags: node VMs get their host's segment from the tags on
// its cluster (zone) and datacenter (region); each datastore is reachable
// in the zone whose hosts mount it; no tag lookup per request.
func TestTopologyFromTags(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2, ZoneBNodeVMs: 1})
	e := connectEnv(t, s, func(o *Options) { o.TopologyCategories = []string{sim.RegionCategory, sim.ZoneCategory} })
	ctx := ctxT(t)
	for _, vm := range s.NodeVMs() {
		n, err := e.c.NodeVM(ctx, vm.UUID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{sim.RegionCategory: sim.Region, sim.ZoneCategory: vm.Zone}
		if !maps.Equal(n.Topology, want) {
			t.Errorf("%s (%s): topology %v, want %v", vm.Name, vm.Host, n.Topology, want)
		}
	}
	mark := e.rec.mark()
	dss, err := e.c.Datastores(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if calls := e.rec.since(mark); len(calls) != 0 {
		t.Errorf("Datastores without a policy made calls: %v", calls)
	}
	zoneOf := map[string][]string{}
	for _, d := range dss {
		for _, seg := range d.Topology {
			if seg[sim.RegionCategory] != sim.Region {
				t.Errorf("%s: segment %v has no region", d.Name, seg)
			}
			zoneOf[d.Name] = append(zoneOf[d.Name], seg[sim.ZoneCategory])
		}
	}
	want := map[string][]string{
		"vsanDatastore": {sim.ZoneA}, "nfs-gold": {sim.ZoneA}, "silver-ds": {sim.ZoneA},
		"zone-b-ds": {sim.ZoneB},
		// local-ds-0 is on one of zone A's three hosts: not reachable in the zone.
	}
	for name, zones := range want {
		if got := zoneOf[name]; len(got) != len(zones) || got[0] != zones[0] {
			t.Errorf("%s: reachable in %v, want %v", name, got, zones)
		}
	}
	if z := zoneOf["local-ds-0"]; len(z) != 0 {
		t.Errorf("local-ds-0 reachable in %v, want nowhere", z)
	}

	// The node plugin's one-shot lookup gives the same answer.
	opts := simOptions(s)
	opts.TopologyCategories = []string{sim.RegionCategory, sim.ZoneCategory}
	vm := s.NodeVMs()[2]
	seg, err := NodeTopology(ctx, opts, vm.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if seg[sim.ZoneCategory] != sim.ZoneB || seg[sim.RegionCategory] != sim.Region {
		t.Errorf("NodeTopology(%s) = %v, want zone-b in region-1", vm.Name, seg)
	}
}

// TestNoTopologyWithoutCategories: no categories, no segments, no vAPI calls.
func TestNoTopologyWithoutCategories(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	dss, err := e.c.Datastores(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dss {
		if len(d.Topology) != 0 {
			t.Errorf("%s: topology %v without categories", d.Name, d.Topology)
		}
	}
	n, err := e.c.NodeVM(ctx, e.sim.NodeVMs()[0].UUID)
	if err != nil || n.Topology != nil {
		t.Errorf("node topology %v, %v without categories", n.Topology, err)
	}
}
