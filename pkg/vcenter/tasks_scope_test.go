package vcenter

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// slowTasks is a latency model where the tasks these tests race take long
// enough to be running when the operation under test starts: longer than
// the watch's pause between answers while it waits for no task of its own
// (idleCoalesce, 2 s).
func slowTasks() sim.Latency {
	return sim.Latency{Methods: map[string]time.Duration{
		"CnsCreateVolume":         3 * time.Second,
		"CnsAttachVolume":         3 * time.Second,
		"CreateSnapshot_Task":     6 * time.Second,
		"RemoveAllSnapshots_Task": 6 * time.Second,
	}}
}

// clusterEnv connects a client of cluster id on s.
func clusterEnv(t testing.TB, s *sim.Sim, id string) *testEnv {
	t.Helper()
	return connectEnv(t, s, func(o *Options) { o.ClusterID = id })
}

// What vCenter shows of CNS's tasks (their descriptionId).
const (
	cnsCreate = "com.vmware.cns.tasks.createvolume"
	cnsAttach = "com.vmware.cns.tasks.attachvolume"
)

// running waits until e's watch sees, for each method named, that many
// more running tasks it does not own.
func (e *testEnv) running(t testing.TB, methods ...string) {
	t.Helper()
	want := map[string]int{}
	for _, m := range methods {
		want[m]++
	}
	eventually(t, fmt.Sprintf("the watch sees %v running", methods), func() bool {
		w := e.c.tasks
		w.mu.Lock()
		defer w.mu.Unlock()
		seen := map[string]int{}
		for k, tk := range w.live {
			if !tk.finished() && w.owners[k] == 0 && !e.counted[k] {
				seen[tk.name]++
				seen[tk.descID]++
			}
		}
		for m, n := range want {
			if seen[m] < n {
				if testing.Verbose() {
					t.Logf("seen %v, want %v", seen, want)
					for k, tk := range w.live {
						t.Logf("live %s %+v owners=%d counted=%v", k, *tk, w.owners[k], e.counted[k])
					}
				}
				return false
			}
		}
		for k, tk := range w.live {
			if !tk.finished() && w.owners[k] == 0 {
				e.counted[k] = true
			}
		}
		return true
	})
}

// goCreate creates a volume in the background.
func goCreate(t testing.TB, wg *sync.WaitGroup, e *testEnv, name string, ds []string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := e.c.CreateVolume(context.Background(), CreateSpec{Name: name, CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
			t.Errorf("create %s: %v", name, err)
		}
	}()
}

// TestOnlyThisClustersTasksOnTheSameObjectAreInDoubt (issue 20): a create
// waits for none of another cluster's creates under the same vCenter user,
// a VM task of that user, or this cluster's create of another name; it
// waits for this cluster's create of the same name by another controller
// (a restarted one, the other replica) and returns what that made. A
// detach waits for none of those, but for another controller's attach to
// the same VM.
func TestOnlyThisClustersTasksOnTheSameObjectAreInDoubt(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2, Latency: slowTasks()})
	a, replica, other := clusterEnv(t, s, "cluster-a"), clusterEnv(t, s, "cluster-a"), clusterEnv(t, s, "cluster-b")
	ctx := ctxT(t)
	ds := placeable(t, a.c, "")
	node1 := s.NodeVMs()[0]

	// A first create shows that vCenter records operation IDs.
	if _, err := a.c.CreateVolume(ctx, CreateSpec{Name: "pvc-first", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	if !a.c.tasks.opIDsSeen {
		t.Fatal("the client did not learn that vCenter records operation IDs")
	}

	var wg sync.WaitGroup
	goCreate(t, &wg, other, "pvc-of-cluster-b", ds)
	goCreate(t, &wg, replica, "pvc-of-the-replica", ds)
	snap, err := object.NewVirtualMachine(a.c.conn.vim, types.ManagedObjectReference{Type: "VirtualMachine", Value: node1.Ref}).
		CreateSnapshot(ctx, "backup", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	a.running(t, cnsCreate, cnsCreate, "CreateSnapshot_Task")
	if _, err := a.c.CreateVolume(ctx, CreateSpec{Name: "pvc-a", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	if n := a.rec.waited("create"); n != 0 {
		t.Errorf("the create waited for %d tasks of others (another cluster's create, a VM snapshot, another name's create); want none", n)
	}

	// The same name: the other controller's create is this one's.
	goCreate(t, &wg, replica, "pvc-same", ds)
	a.running(t, cnsCreate)
	vol, err := a.c.CreateVolume(ctx, CreateSpec{Name: "pvc-same", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.rec.waited("create"); n != 1 {
		t.Errorf("the create of a name another controller of the cluster is creating waited for %d tasks, want 1", n)
	}
	if !vol.Existing {
		t.Errorf("the create made its own volume %s instead of returning the other controller's", vol.ID)
	}
	wg.Wait()
	if n := countNamed(s, "pvc-same"); n != 1 {
		t.Errorf("%d volumes named pvc-same, want 1", n)
	}

	// Detach: not for the VM's snapshot, nor another cluster's attach
	// elsewhere; yes for the other controller's attach to the same VM.
	if _, err := a.c.AttachVolume(ctx, vol.ID, node1.UUID); err != nil {
		t.Fatal(err)
	}
	if err := snap.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	bVol, err := other.c.CreateVolume(ctx, CreateSpec{Name: "pvc-b-attached", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	snap, err = object.NewVirtualMachine(a.c.conn.vim, types.ManagedObjectReference{Type: "VirtualMachine", Value: node1.Ref}).
		RemoveAllSnapshot(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := other.c.AttachVolume(context.Background(), bVol.ID, s.NodeVMs()[1].UUID); err != nil {
			t.Errorf("cluster b's attach: %v", err)
		}
	}()
	a.running(t, "RemoveAllSnapshots_Task", cnsAttach)
	if err := a.c.DetachVolume(ctx, vol.ID, node1.UUID); err != nil {
		t.Fatal(err)
	}
	if n := a.rec.waited("attach"); n != 0 {
		t.Errorf("the detach waited for %d tasks (a VM snapshot, another cluster's attach to another VM); want none", n)
	}
	rVol, err := replica.c.CreateVolume(ctx, CreateSpec{Name: "pvc-replica-attached", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.AttachVolume(ctx, vol.ID, node1.UUID); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := replica.c.AttachVolume(context.Background(), rVol.ID, node1.UUID); err != nil {
			t.Errorf("the replica's attach: %v", err)
		}
	}()
	a.running(t, cnsAttach)
	if err := a.c.DetachVolume(ctx, vol.ID, node1.UUID); err != nil {
		t.Fatal(err)
	}
	if n := a.rec.waited("attach"); n != 1 {
		t.Errorf("the detach waited for %d tasks, want 1: the other controller's attach to the same VM", n)
	}
	wg.Wait()
	_ = snap.Wait(ctx)
}

// TestTasksWithoutOperationIDs: where no task seen carries an operation ID
// (vCenter does not record them, or nothing has run yet), a task of the
// driver's user that could have made the object is in doubt (the safe
// side); one of another kind is not.
func TestTasksWithoutOperationIDs(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Latency: slowTasks()})
	a := clusterEnv(t, s, "cluster-a")
	ctx := ctxT(t)
	ds := placeable(t, a.c, "")
	// A create without an operation ID (as an older driver of this
	// cluster, or a vCenter that does not record them, would show it).
	spec := cnstypes.CnsVolumeCreateSpec{
		Name: "pvc-old", VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		Datastores:           []types.ManagedObjectReference{{Type: "Datastore", Value: ds[0]}},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: 16}},
		Metadata:             a.c.volumeMetadata(CreateSpec{}),
	}
	task, err := a.c.conn.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := object.NewVirtualMachine(a.c.conn.vim, types.ManagedObjectReference{Type: "VirtualMachine", Value: s.NodeVMs()[0].Ref}).
		CreateSnapshot(ctx, "backup", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	a.running(t, cnsCreate, "CreateSnapshot_Task")
	vol, err := a.c.CreateVolume(ctx, CreateSpec{Name: "pvc-old", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.rec.waited("create"); n != 1 {
		t.Errorf("waited for %d tasks, want 1: the create without an operation ID, not the VM's snapshot", n)
	}
	if !vol.Existing || countNamed(s, "pvc-old") != 1 {
		t.Errorf("volume %+v, %d named pvc-old: want the one the earlier create made", vol, countNamed(s, "pvc-old"))
	}
	_ = task
	_ = snap.Wait(ctx)
}

func countNamed(s *sim.Sim, name string) int {
	n := 0
	for _, v := range s.Volumes() {
		if v.Name == name {
			n++
		}
	}
	return n
}

// TestNeighboursTasksAreNotWaitedFor (issue 20): on a vCenter with
// neighbours, a create, a snapshot and a detach started while a 60 s DRS
// migration, a 60 s Storage vMotion by the driver's own user and another
// cluster's 60 s create run wait for none of them.
func TestNeighboursTasksAreNotWaitedFor(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2, Neighbours: sim.Neighbours{VMs: 20, OtherClusterVolumes: 2}})
	nodes := NewNodeSet(uuidsOf(s.NodeVMs())...)
	e := connectEnv(t, s, func(o *Options) { o.ClusterID = "cluster-a"; o.Nodes = nodes })
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	node := s.NodeVMs()[0]
	vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-warm", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, node.UUID); err != nil {
		t.Fatal(err)
	}
	var workload string
	for _, v := range s.NeighbourVMs() {
		if v.Kind == sim.NeighbourWorkload && v.On {
			workload = v.Name
			break
		}
	}
	if _, err := s.StartNeighbourTaskOn(sim.NeighbourDRSMigration, workload, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []sim.NeighbourTaskKind{sim.NeighbourStorageVMotion, sim.NeighbourCNSCreate} {
		if _, err := s.StartNeighbourTask(kind, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	e.running(t, "Drm.ExecuteVMotionLRO", "RelocateVM_Task", cnsCreate)

	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-beside", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateSnapshot(ctx, vol.ID, "snapshot-beside"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DetachVolume(ctx, vol.ID, node.UUID); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"create", "snap", "attach"} {
		if n := e.rec.waited(op); n != 0 {
			t.Errorf("%s waited for %d tasks of the neighbours (a DRS migration, a Storage vMotion of the same user, another cluster's create); want none", op, n)
		}
	}
}
