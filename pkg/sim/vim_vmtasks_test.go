package sim

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// TestVMTaskRunsAsVCenterRunsIt (issue 20): a VM task started over SOAP
// answers at once with a running task of the session's user and the
// caller's operation ID, makes its change only when it completes, and is
// the only task the call leaves in the recent tasks.
func TestVMTaskRunsAsVCenterRunsIt(t *testing.T) {
	s := startSim(t, Options{Latency: Latency{Methods: map[string]time.Duration{"CreateSnapshot_Task": 1500 * time.Millisecond}}})
	c := connect(t, s)
	vm := object.NewVirtualMachine(c.vim, vmRef(s.NodeVMs()[0]))
	ctx := context.WithValue(context.Background(), types.ID{}, "vcsi-test-op-1")

	start := time.Now()
	task, err := vm.CreateSnapshot(ctx, "backup", "", false, false)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the call took %v: it should answer with a running task at once", took)
	}
	var running mo.Task
	if err := property.DefaultCollector(c.vim).RetrieveOne(ctx, task.Reference(), []string{"info"}, &running); err != nil {
		t.Fatal(err)
	}
	info := running.Info
	if info.State != types.TaskInfoStateRunning {
		t.Errorf("state %s right after the call, want running", info.State)
	}
	if r, ok := info.Reason.(*types.TaskReasonUser); !ok || r.UserName != `VSPHERE.LOCAL\administrator` {
		t.Errorf("reason %#v, want the session's user as vCenter writes it (VSPHERE.LOCAL\\administrator)", info.Reason)
	}
	if info.ActivationId != "vcsi-test-op-1" {
		t.Errorf("activationId %q, want the caller's operation ID", info.ActivationId)
	}
	if (info.Name != "CreateSnapshot_Task" && info.Name != "CreateSnapshotEx_Task") || info.DescriptionId != "VirtualMachine.createSnapshot" || info.Entity == nil || *info.Entity != vm.Reference() {
		t.Errorf("name %q, descriptionId %q, entity %v: want CreateSnapshot_Task, VirtualMachine.createSnapshot, %v", info.Name, info.DescriptionId, info.Entity, vm.Reference())
	}
	if n := snapshotCount(t, c, vm); n != 0 {
		t.Errorf("the VM has %d snapshots while the task runs, want none yet", n)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("the task completed after %v, want its 1.5 s", took)
	}
	if n := snapshotCount(t, c, vm); n != 1 {
		t.Errorf("the VM has %d snapshots after the task, want 1", n)
	}
	var tm mo.TaskManager
	if err := property.DefaultCollector(c.vim).RetrieveOne(ctx, *c.vim.ServiceContent.TaskManager, []string{"recentTask"}, &tm); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tm.RecentTask, task.Reference()) {
		t.Errorf("recentTask %v lacks the task %v", tm.RecentTask, task.Reference())
	}
	var infos []mo.Task
	if err := property.DefaultCollector(c.vim).Retrieve(ctx, tm.RecentTask, []string{"info"}, &infos); err != nil {
		t.Fatal(err)
	}
	for _, ti := range infos {
		if r, ok := ti.Info.Reason.(*types.TaskReasonUser); ok && r.UserName == "vcsim" {
			t.Errorf("recentTask holds %s (%s) of the user vcsim: the simulator's own task was not dropped", ti.Info.Key, ti.Info.Name)
		}
	}
}

// TestVMTaskFailureIsTheTasks: a VM task whose change is refused fails as
// a task (its error), not as the call.
func TestVMTaskFailureIsTheTasks(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	vm := object.NewVirtualMachine(c.vim, vmRef(s.NodeVMs()[0]))
	ctx := context.Background()
	tk, err := vm.PowerOn(ctx) // already on
	if err != nil {
		t.Fatalf("the call failed (%v); a real vCenter answers with a task that fails", err)
	}
	err = tk.Wait(ctx)
	if err == nil {
		t.Fatal("powering on a VM that is on succeeded")
	}
	var te task.Error
	if !errors.As(err, &te) || te.Fault() == nil {
		t.Errorf("error %T %v, want the task's fault", err, err)
	}
}

// TestCNSTaskRecordsItsCaller: CNS tasks too carry the session's user and
// the caller's operation ID.
func TestCNSTaskRecordsItsCaller(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.WithValue(context.Background(), types.ID{}, "vcsi-test-op-2")
	spec := createSpec("pvc-caller", 16, "", dsRef(t, s, "silver-ds"))
	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ActivationId != "vcsi-test-op-2" {
		t.Errorf("activationId %q, want the caller's operation ID", info.ActivationId)
	}
	if r, ok := info.Reason.(*types.TaskReasonUser); !ok || r.UserName != `VSPHERE.LOCAL\administrator` {
		t.Errorf("reason %#v, want VSPHERE.LOCAL\\administrator", info.Reason)
	}
}

func snapshotCount(t *testing.T, c *clients, vm *object.VirtualMachine) int {
	t.Helper()
	var m mo.VirtualMachine
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), vm.Reference(), []string{"snapshot"}, &m); err != nil {
		t.Fatal(err)
	}
	if m.Snapshot == nil {
		return 0
	}
	n := 0
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(l []types.VirtualMachineSnapshotTree) {
		for _, s := range l {
			n++
			walk(s.ChildSnapshotList)
		}
	}
	walk(m.Snapshot.RootSnapshotList)
	return n
}
