package sim

import (
	"context"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

func readVMProps(t *testing.T, c *clients, ref types.ManagedObjectReference) mo.VirtualMachine {
	t.Helper()
	var vm mo.VirtualMachine
	props := []string{"name", "runtime.host", "runtime.powerState", "config.files", "snapshot"}
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), ref, props, &vm); err != nil {
		t.Fatal(err)
	}
	return vm
}

func startNeighbour(t *testing.T, s *Sim, kind NeighbourTaskKind, d time.Duration) types.ManagedObjectReference {
	t.Helper()
	ref, err := s.StartNeighbourTask(kind, d)
	if err != nil {
		t.Fatalf("start %s: %v", kind, err)
	}
	return ref
}

func waitOK(t *testing.T, c *clients, ref types.ManagedObjectReference) {
	t.Helper()
	if err := object.NewTask(c.vim, ref).Wait(context.Background()); err != nil {
		t.Fatalf("task %s: %v", ref.Value, err)
	}
}

// checkInfo checks what a real vCenter shows of a running task.
func checkInfo(t *testing.T, info types.TaskInfo, name, describe string, reason types.BaseTaskReason) {
	t.Helper()
	if info.State != types.TaskInfoStateRunning || info.Name != name || info.DescriptionId != describe || info.Entity == nil {
		t.Errorf("task %s: state %s, name %q, descriptionId %q, entity %v; want running, %q, %q", info.Key, info.State, info.Name, info.DescriptionId, info.Entity, name, describe)
	}
	switch want := reason.(type) {
	case *types.TaskReasonSystem:
		if _, ok := info.Reason.(*types.TaskReasonSystem); !ok {
			t.Errorf("%s: reason %#v, want TaskReasonSystem", describe, info.Reason)
		}
	case *types.TaskReasonUser:
		if got, ok := info.Reason.(*types.TaskReasonUser); !ok || got.UserName != want.UserName {
			t.Errorf("%s: reason %#v, want the user %s", describe, info.Reason, want.UserName)
		}
	}
}

// TestNeighbourVMTasksRunAsVCenterRunsThem (issue 20): a background task
// of each kind shows what a real vCenter shows (name, descriptionId,
// reason, entity) and makes its change only when it completes.
func TestNeighbourVMTasksRunAsVCenterRunsThem(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{VMs: 40}})
	c := connect(t, s)
	const d = time.Second
	me := &types.TaskReasonUser{UserName: callerName(s.Username())}

	drs := startNeighbour(t, s, NeighbourDRSMigration, d)
	svm := startNeighbour(t, s, NeighbourStorageVMotion, d)
	backup := startNeighbour(t, s, NeighbourBackupSnapshot, d)
	sched := startNeighbour(t, s, NeighbourScheduledPower, d)
	infos := map[string]types.TaskInfo{}
	before := map[string]mo.VirtualMachine{}
	for name, ref := range map[string]types.ManagedObjectReference{"drs": drs, "svm": svm, "backup": backup, "sched": sched} {
		infos[name] = taskInfo(t, c, ref)
		before[name] = readVMProps(t, c, *infos[name].Entity)
	}
	checkInfo(t, infos["drs"], "", "Drm.ExecuteVMotionLRO", &types.TaskReasonSystem{})
	checkInfo(t, infos["svm"], "RelocateVM_Task", "VirtualMachine.relocate", me)
	checkInfo(t, infos["backup"], "CreateSnapshot_Task", "VirtualMachine.createSnapshot", &types.TaskReasonUser{UserName: BackupUser})
	r, ok := infos["sched"].Reason.(*types.TaskReasonSchedule)
	if !ok || r.Name == "" {
		t.Fatalf("scheduled task's reason %#v, want TaskReasonSchedule with a name", infos["sched"].Reason)
	}
	var st mo.ScheduledTask
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), r.ScheduledTask, []string{"info"}, &st); err != nil || st.Info.Name != r.Name {
		t.Errorf("the reason's scheduled task %v: %v, name %q; want %q", r.ScheduledTask, err, st.Info.Name, r.Name)
	}
	if before["backup"].Snapshot != nil {
		t.Errorf("the backup's snapshot is there while its task runs")
	}

	for _, ref := range []types.ManagedObjectReference{drs, svm, backup, sched} {
		waitOK(t, c, ref)
	}
	after := func(name string) mo.VirtualMachine { return readVMProps(t, c, *infos[name].Entity) }
	if a := after("drs"); *a.Runtime.Host == *before["drs"].Runtime.Host {
		t.Errorf("the DRS migration of %s left it on %v", a.Name, a.Runtime.Host)
	}
	if a, b := after("svm"), before["svm"]; datastoreOfPath(a.Config.Files.VmPathName) == datastoreOfPath(b.Config.Files.VmPathName) {
		t.Errorf("the Storage vMotion of %s left it at %s", a.Name, a.Config.Files.VmPathName)
	}
	if a := after("sched"); a.Runtime.PowerState == before["sched"].Runtime.PowerState {
		t.Errorf("the scheduled power operation left %s %s", a.Name, a.Runtime.PowerState)
	}
	if a := after("backup"); a.Snapshot == nil || len(a.Snapshot.RootSnapshotList) != 1 {
		t.Fatalf("the backup made no snapshot of %s", a.Name)
	}
	held := false
	for _, e := range s.Events(0) {
		held = held || (e.Kind == EventReconfigStart && e.Task == drs.Value && e.VM == infos["drs"].Entity.Value)
	}
	if !held {
		t.Errorf("the vMotion did not hold its VM")
	}

	remove := startNeighbour(t, s, NeighbourBackupRemove, d)
	info := taskInfo(t, c, remove)
	checkInfo(t, info, "RemoveSnapshot_Task", "VirtualMachine.removeSnapshot", &types.TaskReasonUser{UserName: BackupUser})
	if *info.Entity != *infos["backup"].Entity || readVMProps(t, c, *info.Entity).Snapshot == nil {
		t.Errorf("removal of %v: the snapshot went before the task ended", info.Entity)
	}
	waitOK(t, c, remove)
	if a := after("backup"); a.Snapshot != nil && len(a.Snapshot.RootSnapshotList) != 0 {
		t.Errorf("the backup's snapshot stayed on %s", a.Name)
	}
}

// TestNeighbourCNSTasks (issue 20): the other cluster's CNS calls go
// through the volume manager under our user, half with an operation ID of
// the other cluster and half with none, and change CNS only when they
// complete.
func TestNeighbourCNSTasks(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{OtherClusterVolumes: 6}})
	c := connect(t, s)
	const d = 600 * time.Millisecond
	me := &types.TaskReasonUser{UserName: callerName(s.Username())}
	count := func() (vols, snaps int) {
		res, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{ContainerClusterIds: []string{DefaultOtherClusterID}})
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Volumes), s.SnapshotCount()
	}
	v0, s0 := count()
	for _, step := range []struct {
		kind         NeighbourTaskKind
		method       string
		dVols, dSnap int
	}{
		{NeighbourCNSCreate, "CnsCreateVolume", 1, 0},
		{NeighbourCNSSnapshot, "CnsCreateSnapshots", 0, 1},
		{NeighbourCNSDeleteSnapshot, "CnsDeleteSnapshots", 0, -1},
		{NeighbourCNSDelete, "CnsDeleteVolume", -1, 0},
	} {
		ref := startNeighbour(t, s, step.kind, d)
		info := taskInfo(t, c, ref)
		checkInfo(t, info, "", cnsTaskID(step.method), me) // CNS's tasks have no info.name
		if v, sn := count(); v != v0 || sn != s0 {
			t.Errorf("%s: %d volumes, %d snapshots while it runs; want %d, %d", step.kind, v, sn, v0, s0)
		}
		waitOK(t, c, ref)
		v0, s0 = v0+step.dVols, s0+step.dSnap
		if v, sn := count(); v != v0 || sn != s0 {
			t.Errorf("%s: %d volumes, %d snapshots after it; want %d, %d", step.kind, v, sn, v0, s0)
		}
	}

	with, without := 0, 0
	for range 10 {
		info := taskInfo(t, c, startNeighbour(t, s, NeighbourCNSCreate, time.Millisecond))
		tok, ok := opid.Parse(info.ActivationId)
		switch {
		case info.ActivationId == "":
			without++
		case ok && tok.Cluster == opid.Tag(DefaultOtherClusterID) && tok.Op == opid.Create:
			with++
		default:
			t.Errorf("activationId %q is not the other cluster's", info.ActivationId)
		}
	}
	if with == 0 || without == 0 {
		t.Errorf("of 10 creates %d carry an operation ID and %d none; want some of each", with, without)
	}
}

// TestDRSMovesOurNodeVMs (issue 20): DRS moves our node VMs too, at the
// end of its task, but never one with a disk on a datastore no other host
// of its cluster mounts.
func TestDRSMovesOurNodeVMs(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{VMs: 10}})
	c := connect(t, s)
	pinned := s.NodeVMs()[0] // on the first host, the only one with local-ds-0
	vctx := s.vimContext()
	if st, _ := readVM(vctx, vmRef(pinned)); s.nb.migrationTarget(st) == nil {
		t.Fatalf("%s has nowhere to go before it has a local disk", pinned.Name)
	}
	id := mustCreate(t, c, createSpec("local", 16, "", dsRef(t, s, "local-ds-0")))
	if _, f := attach(t, c, id, vmRef(pinned)); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	if st, _ := readVM(vctx, vmRef(pinned)); s.nb.migrationTarget(st) != nil {
		t.Fatalf("%s, with a disk on local-ds-0, can be moved", pinned.Name)
	}
	ours := map[string]NodeVM{}
	for _, n := range s.NodeVMs() {
		ours[n.Ref] = n
	}
	for range 60 {
		ref := startNeighbour(t, s, NeighbourDRSMigration, 300*time.Millisecond)
		info := taskInfo(t, c, ref)
		n, ok := ours[info.Entity.Value]
		if !ok {
			continue
		}
		if n.Name == pinned.Name {
			t.Fatalf("DRS moves %s, which has a disk on local-ds-0", n.Name)
		}
		if now := nodeByName(s, n.Name); now.Host != n.Host {
			t.Errorf("%s is on %s while its migration runs, was on %s", n.Name, now.Host, n.Host)
		}
		waitOK(t, c, ref)
		now := nodeByName(s, n.Name)
		host := readVMProps(t, c, vmRef(n)).Runtime.Host
		if now.Host == n.Host || names(c, []types.ManagedObjectReference{*host})[*host] != now.Host {
			t.Errorf("after its migration %s is on %s (runtime.host %v), was on %s", n.Name, now.Host, host, n.Host)
		}
		return
	}
	t.Fatal("60 DRS migrations moved none of our node VMs")
}

func nodeByName(s *Sim, name string) NodeVM {
	for _, n := range s.NodeVMs() {
		if n.Name == name {
			return n
		}
	}
	return NodeVM{}
}

// TestNeighbourTaskRate (issue 20): background tasks start at the rate
// asked for, of several kinds.
func TestNeighbourTaskRate(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{VMs: 20, OtherClusterVolumes: 4, TasksPerMinute: 1200}})
	time.Sleep(2 * time.Second) // 40 expected
	total, counts := 0, s.NeighbourTaskCounts()
	for _, n := range counts {
		total += n
	}
	if total < 20 || total > 60 || len(counts) < 3 {
		t.Errorf("in 2 s at 1200 a minute %d tasks started (%v), want 20 to 60 of several kinds", total, counts)
	}
}

// TestAddNodeVMSurvivesRestart (issue 20): a node VM added on a zone-B
// host and one on a workload host are built as ours, listed by NodeVMs,
// and come back, with the same references and an attachment, after a
// restart.
func TestAddNodeVMSurvivesRestart(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{VMs: 10}})
	ctx := context.Background()
	var zoneB, workload HostInfo
	for _, h := range s.Hosts() {
		switch {
		case h.Zone == ZoneB && zoneB.Name == "":
			zoneB = h
		case h.Cluster == workloadCluster && workload.Name == "":
			workload = h
		}
	}
	b, err := s.AddNodeVM(ctx, zoneB.Name)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.AddNodeVM(ctx, workload.Name)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "k8s-node-b-1" || b.Zone != ZoneB || b.Host != zoneB.Name || b.State != "poweredOn" || w.Name != "k8s-node-w-1" || w.Zone != "" {
		t.Errorf("added %+v and %+v", b, w)
	}
	if nodes := s.NodeVMs(); len(nodes) != 5 || nodes[3] != b || nodes[4] != w {
		t.Errorf("NodeVMs %+v, want the 3 seeded and the 2 added", nodes)
	}
	c := connect(t, s)
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(c.vim).RetrieveOne(ctx, vmRef(b), []string{"name", "config"}, &vm); err != nil {
		t.Fatal(err)
	}
	checkNodeVM(t, c, vm, b.UUID)
	id := mustCreate(t, c, createSpec("on-b", 16, "", dsRef(t, s, "zone-b-ds")))
	if _, f := attach(t, c, id, vmRef(b)); f != nil {
		t.Fatal(f.LocalizedMessage)
	}

	s2 := restart(t, s, TasksAbandoned)
	got := map[string]NodeVM{}
	for _, n := range s2.NodeVMs() {
		got[n.Name] = n
	}
	if got[b.Name].Ref != b.Ref || got[w.Name].Ref != w.Ref || got[b.Name].Host != b.Host || got[w.Name].Host != w.Host {
		t.Errorf("after a restart %+v and %+v, want %+v and %+v", got[b.Name], got[w.Name], b, w)
	}
	for _, v := range s2.Volumes() {
		if v.ID == id && v.VM != b.Name {
			t.Errorf("after a restart volume %s is attached to %q, want %s", id, v.VM, b.Name)
		}
	}
}

// TestNeighboursShape: a kept state's neighbours are taken when none are
// asked for, and other ones refused.
func TestNeighboursShape(t *testing.T) {
	kept := &meta{Neighbours: &Neighbours{VMs: 10, Seed: 1, OtherClusterID: DefaultOtherClusterID}}
	opts := Options{}
	if err := shapeNeighbours(&opts, kept, 0); err != nil || opts.Neighbours.VMs != 10 {
		t.Errorf("none asked for: %v, %+v", err, opts.Neighbours)
	}
	opts = Options{Neighbours: Neighbours{VMs: 20}}
	if err := shapeNeighbours(&opts, kept, 0); err == nil {
		t.Error("20 neighbour VMs on a state kept with 10: no error")
	}
	opts = Options{Neighbours: Neighbours{VMs: 10}}
	if err := shapeNeighbours(&opts, kept, 0); err != nil {
		t.Errorf("the same neighbours: %v", err)
	}
	if err := shapeNeighbours(&opts, &meta{}, 1); err == nil {
		t.Error("neighbours on a state with node VMs added without them: no error")
	}
}
