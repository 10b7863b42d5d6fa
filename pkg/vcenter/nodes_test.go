package vcenter

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// vmsByPrefix are the seeded node VMs whose names start with prefix.
func vmsByPrefix(s *sim.Sim, prefix string) []sim.NodeVM {
	var out []sim.NodeVM
	for _, vm := range s.NodeVMs() {
		if strings.HasPrefix(vm.Name, prefix) {
			out = append(out, vm)
		}
	}
	return out
}

func uuidsOf(vms []sim.NodeVM) []string {
	out := make([]string, 0, len(vms))
	for _, vm := range vms {
		out = append(out, vm.UUID)
	}
	return out
}

// datastore returns the datastore named name as the client lists it.
func datastore(t testing.TB, c Client, name string) Datastore {
	t.Helper()
	dss, err := c.Datastores(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dss {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no datastore %s in %+v", name, dss)
	return Datastore{}
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnlyTheClustersNodesCount (issue 20): a VM that is not one of the
// cluster's nodes, on a host that does not mount nfs-gold, neither makes
// nfs-gold unreachable nor is followed by the watch; when it joins the
// cluster, nfs-gold becomes unreachable within seconds with a message
// naming it; when it leaves, reachable again. Without a node source every
// VM counts (the plain vCenter's rule).
func TestOnlyTheClustersNodesCount(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2, ZoneBNodeVMs: 1})
	zoneA, zoneB := vmsByPrefix(s, "k8s-node-"), vmsByPrefix(s, "k8s-node-b-")
	zoneA = slices.DeleteFunc(zoneA, func(vm sim.NodeVM) bool { return strings.HasPrefix(vm.Name, "k8s-node-b-") })
	if len(zoneA) != 2 || len(zoneB) != 1 {
		t.Fatalf("node VMs %+v", s.NodeVMs())
	}
	stranger := zoneB[0]

	every := connectEnv(t, s, nil)
	if d := datastore(t, every.c, "nfs-gold"); d.Reachable || !slices.Contains(d.Unreachable, stranger.Name) {
		t.Fatalf("without a node source: nfs-gold %+v, want unreachable for %s (every VM counts)", d, stranger.Name)
	}

	nodes := NewNodeSet(uuidsOf(zoneA)...)
	e := connectEnv(t, s, func(o *Options) { o.Nodes = nodes })
	if d := datastore(t, e.c, "nfs-gold"); !d.Reachable {
		t.Fatalf("nfs-gold %+v: want reachable from the cluster's nodes %v", d, uuidsOf(zoneA))
	}
	if _, _, ok := e.c.inv.Load().nodeVM(stranger.UUID); ok {
		t.Errorf("the watch follows %s, which is not a node", stranger.Name)
	}

	mark := e.n.Count()
	nodes.Set(append(uuidsOf(zoneA), stranger.UUID))
	eventually(t, "nfs-gold unreachable once "+stranger.Name+" joined", func() bool {
		d := datastore(t, e.c, "nfs-gold")
		return !d.Reachable && slices.Equal(d.Unreachable, []string{stranger.Name})
	})
	// One look-up of the new node, one change of the watch's view, and
	// the watch's own answers.
	if calls := e.n.Count() - mark; calls > 8 {
		t.Errorf("a node joining cost %d round trips, want a handful", calls)
	}

	nodes.Set(uuidsOf(zoneA))
	eventually(t, "nfs-gold reachable once "+stranger.Name+" left", func() bool {
		return datastore(t, e.c, "nfs-gold").Reachable
	})
	eventually(t, "the watch forgets "+stranger.Name, func() bool {
		_, _, ok := e.c.inv.Load().nodeVM(stranger.UUID)
		return !ok
	})
}

// TestDetachFromAVMThatIsNoLongerANode: Kubernetes forgot a node (its
// CSINode is gone) whose VM still has a disk attached; the detach that
// follows must take the disk off the VM, not call it gone.
func TestDetachFromAVMThatIsNoLongerANode(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2})
	vms := s.NodeVMs()
	nodes := NewNodeSet(uuidsOf(vms)...)
	e := connectEnv(t, s, func(o *Options) { o.Nodes = nodes })
	ctx := ctxT(t)
	vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-forgotten", CapacityBytes: 16 * mib, DatastoreIDs: placeable(t, e.c, "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, vms[1].UUID); err != nil {
		t.Fatal(err)
	}
	nodes.Set([]string{vms[0].UUID})
	eventually(t, "the watch forgets "+vms[1].Name, func() bool {
		_, _, ok := e.c.inv.Load().nodeVM(vms[1].UUID)
		return !ok
	})
	if err := e.c.DetachVolume(ctx, vol.ID, vms[1].UUID); err != nil {
		t.Fatal(err)
	}
	for _, v := range s.Volumes() {
		if v.ID == vol.ID && v.VM != "" {
			t.Fatalf("volume %s is still attached to %s: the detach called a VM that is no longer a node gone", vol.ID, v.VM)
		}
	}
	// It counts for nothing: a datastore only it could not see stays
	// reachable (every datastore here is seen by both).
	if d := datastore(t, e.c, "nfs-gold"); !d.Reachable {
		t.Errorf("nfs-gold %+v", d)
	}
	// A node ID with no VM at all: the detach succeeds (nothing is there).
	if err := e.c.DetachVolume(ctx, vol.ID, "42000000-0000-0000-0000-000000000000"); err != nil {
		t.Errorf("detach from a VM vCenter does not have: %v", err)
	}
}

// TestNodeWithoutVM: a node whose BIOS UUID names no VM counts for nothing
// (logged), and the others still work.
func TestNodeWithoutVM(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	nodes := NewNodeSet(s.NodeVMs()[0].UUID, "42000000-0000-0000-0000-0000000000ff")
	e := connectEnv(t, s, func(o *Options) { o.Nodes = nodes })
	if got := len(e.c.nodes.nodeRefs()); got != 1 {
		t.Errorf("%d node VMs, want 1", got)
	}
	if d := datastore(t, e.c, "local-ds-0"); !d.Reachable {
		t.Errorf("local-ds-0 %+v: want reachable from the one node's host", d)
	}
}

// TestNoNodeKnownYet: with a node source that knows no node yet (the
// controller started before any node plugin registered), no datastore is
// reachable, and the reason says so; once a node comes, they are.
func TestNoNodeKnownYet(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	nodes := NewNodeSet()
	e := connectEnv(t, s, func(o *Options) { o.Nodes = nodes })
	if d := datastore(t, e.c, "nfs-gold"); d.Reachable || len(d.Unreachable) != 1 || !strings.Contains(d.Unreachable[0], "none known yet") {
		t.Errorf("nfs-gold %+v with no node known: want unreachable, saying none is known", d)
	}
	nodes.Set(uuidsOf(s.NodeVMs()))
	eventually(t, "nfs-gold reachable once a node is known", func() bool { return datastore(t, e.c, "nfs-gold").Reachable })
}

func TestNodeSetSignalsChanges(t *testing.T) {
	s := NewNodeSet("42000000-0000-0000-0000-000000000002", "VMware-42 00 00 00 00 00 00 00-00 00 00 00 00 00 00 01", "not-a-uuid")
	got, changed := s.Nodes()
	if !slices.Equal(got, []string{"42000000-0000-0000-0000-000000000001", "42000000-0000-0000-0000-000000000002"}) {
		t.Fatalf("Nodes() = %v", got)
	}
	s.Set([]string{"42000000-0000-0000-0000-000000000001", "42000000-0000-0000-0000-000000000002"})
	select {
	case <-changed:
		t.Fatal("the same set signalled a change")
	default:
	}
	s.Set([]string{"42000000-0000-0000-0000-000000000001"})
	select {
	case <-changed:
	default:
		t.Fatal("a new set did not signal a change")
	}
}
