package sim

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vslm"
)

// TestStartTwiceOnOneDir: a kept state dir must not stop the next Start.
func TestStartTwiceOnOneDir(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	dir := t.TempDir()
	s, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("second Start on the same dir: %v", err)
	}
	_ = s2.Close()
}

// restart stops s as a vCenter restart does and starts it again on its dir.
func restart(t *testing.T, s *Sim, fate TaskFate) *Sim {
	t.Helper()
	opts := s.opts
	opts.Listen = s.HostPort()
	s.Stop(StopOptions{RunningTasks: fate})
	return startSim(t, opts)
}

func isNotAuthenticated(err error) bool {
	if !soap.IsSoapFault(err) {
		return false
	}
	_, ok := soap.ToSoapFault(err).VimFault().(types.NotAuthenticated)
	return ok
}

// TestRestartKeepsState: what a vCenter keeps survives a stop and a start
// on the same dir: volumes with their IDs, metadata, policy and health,
// attachments (the disk on the VM and, with the hypervisor, its device on
// the node), snapshots, first-class disks, datastore free space, a VM's
// power state, tags, the certificate and the address. Sessions do not.
func TestRestartKeepsState(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	hv := os.Geteuid() == 0
	s := startSim(t, Options{NodeVMs: 2, Hypervisor: hv})
	c := connect(t, s)
	ctx := context.Background()
	gold := policyID(t, c, "Gold")
	node := s.NodeVMs()[0]
	spec := createSpec("kept", 64, gold)
	spec.Metadata.EntityMetadata = []cnstypes.BaseCnsEntityMetadata{&cnstypes.CnsKubernetesEntityMetadata{
		CnsEntityMetadata: cnstypes.CnsEntityMetadata{EntityName: "pvc-kept", ClusterID: "test-cluster"},
		EntityType:        string(cnstypes.CnsKubernetesEntityTypePVC), Namespace: "default",
	}}
	id := mustCreate(t, c, spec)
	diskUUID, f := attach(t, c, id, vmRef(node))
	if f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	other := mustCreate(t, c, createSpec("snapped", 32, gold))
	task, err := c.cns.CreateSnapshots(ctx, []cnstypes.CnsSnapshotCreateSpec{{VolumeId: cnstypes.CnsVolumeId{Id: other}, Description: "snap-1"}})
	snapRes, ok := result(t, task, err).(*cnstypes.CnsSnapshotCreateResult)
	if !ok || snapRes.Fault != nil {
		t.Fatalf("snapshot: %#v", snapRes)
	}
	if !s.SetVolumeHealth(other, "yellow") {
		t.Fatal("SetVolumeHealth")
	}
	if err := s.FillDatastore("silver-ds", 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := s.PowerOffVM(ctx, s.NodeVMs()[1].Name); err != nil {
		t.Fatal(err)
	}
	fcdTask, err := vslm.NewObjectManager(c.vim).CreateDisk(ctx, types.VslmCreateSpec{
		Name: "made-in-vsphere", CapacityInMB: 16,
		BackingSpec: &types.VslmCreateSpecDiskFileBackingSpec{VslmCreateSpecBackingSpec: types.VslmCreateSpecBackingSpec{Datastore: dsRef(t, s, "vsanDatastore")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	fcdInfo, err := fcdTask.WaitForResult(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	fcdID := fcdInfo.Result.(types.VStorageObject).Config.Id
	before := s.Datastores()
	url, thumb := s.URL(), s.Thumbprint()
	link := filepath.Join(node.ByIDDir, "wwn-0x"+diskUUID)
	var dev string
	if hv {
		if dev, err = filepath.EvalSymlinks(link); err != nil {
			t.Fatal(err)
		}
	}
	s.syncFCDsOnce() // what the ticker would do within a second

	s2 := restart(t, s, TasksAbandoned)
	if s2.URL() != url || s2.Thumbprint() != thumb {
		t.Fatalf("restarted at %s with thumbprint %s, want %s and %s", s2.URL(), s2.Thumbprint(), url, thumb)
	}
	// The old client's session is gone: NotAuthenticated.
	if _, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{}); !isNotAuthenticated(err) {
		t.Fatalf("old session after the restart: got %v, want NotAuthenticated", err)
	}
	c2 := connect(t, s2)
	got := queryOne(t, c2, id)
	if got.Name != "kept" || got.StoragePolicyId != gold || len(got.Metadata.EntityMetadata) != 1 ||
		got.Metadata.EntityMetadata[0].GetCnsEntityMetadata().EntityName != "pvc-kept" {
		t.Errorf("volume after the restart: %+v", got)
	}
	if h := queryOne(t, c2, other).HealthStatus; h != "yellow" {
		t.Errorf("health after the restart: %s", h)
	}
	disks := vmDisks(t, c2, vmRef(node))
	if len(disks) != 1 || disks[0].VDiskId == nil || disks[0].VDiskId.Id != id {
		t.Errorf("disks on %s after the restart: %d", node.Name, len(disks))
	}
	if hv {
		dev2, err := filepath.EvalSymlinks(link)
		if err != nil || dev2 != dev {
			t.Errorf("by-id link after the restart: %s (%v), want %s", dev2, err, dev)
		}
	}
	if vms := s2.NodeVMs(); vms[1].State != "poweredOff" || vms[0].State != "poweredOn" || vms[0].Ref != node.Ref {
		t.Errorf("node VMs after the restart: %+v", vms)
	}
	for i, d := range s2.Datastores() {
		if d.Ref != before[i].Ref || d.FreeBytes != before[i].FreeBytes {
			t.Errorf("datastore %s after the restart: %s %d free, was %s %d", d.Name, d.Ref, d.FreeBytes, before[i].Ref, before[i].FreeBytes)
		}
	}
	snaps := querySnapshots(t, c2, other)
	if len(snaps) != 1 || snaps[0].SnapshotId.Id != snapRes.Snapshot.SnapshotId.Id || snaps[0].Description != "snap-1" {
		t.Errorf("snapshots after the restart: %+v", snaps)
	}
	if _, err := vslm.NewObjectManager(c2.vim).Retrieve(ctx, dsRef(t, s2, "vsanDatastore"), fcdID.Id); err != nil {
		t.Errorf("first-class disk %s after the restart: %v", fcdID.Id, err)
	}
	checkTags(t, s2)

	// And it carries on: detach, delete.
	if f := detach(t, c2, id, vmRef(node)); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	if f := deleteVolume(t, c2, id); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
}

func querySnapshots(t *testing.T, c *clients, volumeID string) []cnstypes.CnsSnapshot {
	t.Helper()
	ctx := context.Background()
	task, err := c.cns.QuerySnapshots(ctx, cnstypes.CnsSnapshotQueryFilter{
		SnapshotQuerySpecs: []cnstypes.CnsSnapshotQuerySpec{{VolumeId: cnstypes.CnsVolumeId{Id: volumeID}}}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cns.GetQuerySnapshotsTaskResult(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	var out []cnstypes.CnsSnapshot
	for _, e := range res.Entries {
		out = append(out, e.Snapshot)
	}
	return out
}

func checkTags(t *testing.T, s *Sim) {
	t.Helper()
	c := connect(t, s)
	rc := rest.NewClient(c.vim)
	ctx := context.Background()
	if err := rc.Login(ctx, userInfo(s)); err != nil {
		t.Fatalf("vAPI login: %v", err)
	}
	attached, err := tags.NewManager(rc).GetAttachedTags(ctx, types.ManagedObjectReference{Type: "Datacenter", Value: s.inv.dc.Value})
	if err != nil || len(attached) != 1 || attached[0].Name != Region {
		t.Errorf("tags on the datacenter: %+v (%v)", attached, err)
	}
}

// TestTaskRunningAtRestart: a task running when the vCenter stops is gone
// afterwards (ManagedObjectNotFound), and its operation happened or not
// as the stop says; new tasks never reuse its reference.
func TestTaskRunningAtRestart(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	for _, tc := range []struct {
		fate TaskFate
		want int
	}{{TasksAbandoned, 0}, {TasksComplete, 1}} {
		s := startSim(t, Options{Latency: Latency{Methods: map[string]time.Duration{"CnsCreateVolume": time.Hour}}})
		c := connect(t, s)
		task, err := c.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{createSpec("in-flight", 64, "")})
		if err != nil {
			t.Fatal(err)
		}
		s2 := restart(t, s, tc.fate)
		s2.SetLatency(Latency{})
		c2 := connect(t, s2)
		if n := len(queryByName(t, c2, "in-flight")); n != tc.want {
			t.Errorf("fate %d: %d volumes after the restart, want %d", tc.fate, n, tc.want)
		}
		var gone mo.Task
		err = property.DefaultCollector(c2.vim).RetrieveOne(context.Background(), task.Reference(), []string{"info"}, &gone)
		if !soap.IsSoapFault(err) {
			t.Fatalf("the old task after the restart: got %v, want ManagedObjectNotFound", err)
		}
		if _, ok := soap.ToSoapFault(err).VimFault().(types.ManagedObjectNotFound); !ok {
			t.Errorf("the old task after the restart: %T, want ManagedObjectNotFound", soap.ToSoapFault(err).VimFault())
		}
		newTask, err := c2.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{createSpec("after", 64, "")})
		if err != nil {
			t.Fatal(err)
		}
		if newTask.Reference().Value == task.Reference().Value || taskNumber(newTask.Reference()) < taskNumber(task.Reference()) {
			t.Errorf("new task %s after the restart, old one was %s", newTask.Reference().Value, task.Reference().Value)
		}
		result(t, newTask, nil)
	}
}

func taskNumber(ref types.ManagedObjectReference) int64 {
	var n int64
	for _, r := range ref.Value {
		if r >= '0' && r <= '9' {
			n = n*10 + int64(r-'0')
		}
	}
	return n
}

// TestRestartRefusesAnotherShape: a state dir kept for 2 node VMs does not
// start with 3 (the records would point at other objects).
func TestRestartRefusesAnotherShape(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	dir := t.TempDir()
	s := startSim(t, Options{Dir: dir, NodeVMs: 2})
	s.Stop(StopOptions{})
	_, err := Start(context.Background(), Options{Dir: dir, NodeVMs: 3})
	if err == nil || !containsAll(err.Error(), "2 node VMs", "new --dir") {
		t.Fatalf("got %v, want a refusal naming the kept shape", err)
	}
	s2 := startSim(t, Options{Dir: dir}) // no count given: the kept one
	if n := len(s2.NodeVMs()); n != 2 {
		t.Errorf("%d node VMs, want the kept 2", n)
	}
}
