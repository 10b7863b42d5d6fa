package sim

import (
	"context"
	"reflect"
	"slices"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// The simulator's own VM tasks do their work before the call answers and
// run no time at all, and it records them as started by the user "vcsim".
// A real vCenter answers a *_Task call at once with a running task whose
// progress moves, records who started it (the session's user, the
// caller's operationID as info.activationId), and makes the change only
// when the task completes. vmTaskMethods are run that way (vim_tasks.go,
// startTask): the call answers with a task of ours; when its time (the
// method's latency) is up, the simulator's method is called in-process and
// its own task, done at once, gives the outcome, and is then dropped from
// the recent tasks (nobody started it).

// vmTaskMethods are the VirtualMachine and VirtualMachineSnapshot methods
// whose tasks run the way a real vCenter runs them.
var vmTaskMethods = map[string]bool{
	"PowerOnVM_Task": true, "PowerOffVM_Task": true, "ResetVM_Task": true, "SuspendVM_Task": true,
	"ReconfigVM_Task": true, "RelocateVM_Task": true, "CloneVM_Task": true, "Destroy_Task": true,
	"CreateSnapshot_Task": true, "CreateSnapshotEx_Task": true, "RemoveAllSnapshots_Task": true, "RevertToCurrentSnapshot_Task": true,
	"RemoveSnapshot_Task": true, "RevertToSnapshot_Task": true,
}

// vmTasksRef is where the calls of vmTaskMethods are sent (dispatch
// rewrites their target: the simulator would otherwise find the VM itself
// through the caller's session); the target stays in the request.
var vmTasksRef = types.ManagedObjectReference{Type: "VsphereSimVMTasks", Value: "vm-tasks"}

// routeVMTask sends a call of one of vmTaskMethods to the vmTasks
// object (and says so); any other call is left alone.
func (b *lab) routeVMTask(m *simulator.Method) bool {
	if !vmTaskMethods[m.Name] || b.internal == nil {
		return false
	}
	switch m.This.Type {
	case "VirtualMachine", "VirtualMachineSnapshot":
		m.This = vmTasksRef
		return true
	}
	return false
}

// vmTasks answers the calls of vmTaskMethods. Like every object of the
// simulator's registry its first field is a managed object type (the
// simulator digs it out by reflection); it opts out of the registry's
// per-object lock (Lock, Unlock): a call only starts a task.
type vmTasks struct {
	mo.ExtensibleManagedObject
	b *lab
}

func (*vmTasks) Lock()   {}
func (*vmTasks) Unlock() {}

// innerCall makes the simulator's own call in-process and returns its task.
type innerCall func(ctx context.Context, c *vim25.Client) (types.ManagedObjectReference, error)

// start starts the task of the call of method on this, whose effect is
// inner.
func (p *vmTasks) start(ctx *simulator.Context, this types.ManagedObjectReference, method string, inner innerCall) types.ManagedObjectReference {
	vctx := ctx.For(vim25.Path)
	entity := this
	if snap, ok := vctx.Map.Get(this).(*simulator.VirtualMachineSnapshot); ok {
		entity = snap.Vm // vCenter shows a snapshot's task on its VM
	}
	spec := taskSpec{
		method:     method,
		describe:   entity.Type + "." + lowerFirst(strings.TrimSuffix(strings.TrimSuffix(method, "_Task"), "Ex")),
		entity:     entity,
		reason:     callerReason(ctx),
		activation: ctx.Header.ID,
		duration:   p.b.latencyOf(method),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			return p.b.runInner(vctx, inner)
		},
	}
	if method == "ReconfigVM_Task" || method == "RelocateVM_Task" {
		spec.vms = []types.ManagedObjectReference{entity} // holds the VM, as CNS attaches do
	}
	return p.b.startTask(vctx, spec)
}

// runInner makes the simulator's call, waits for its task and drops that
// task from the recent tasks.
func (b *lab) runInner(vctx *simulator.Context, inner innerCall) (types.AnyType, types.BaseMethodFault) {
	ictx, c, err := b.internal(context.Background())
	if err != nil {
		return nil, &types.SystemError{Reason: err.Error()}
	}
	ref, err := inner(ictx, c)
	if err != nil {
		return nil, methodFault(err)
	}
	info := waitTask(vctx, ref)
	forgetTask(vctx, ref, info.Entity)
	if info.Error != nil {
		return nil, info.Error.Fault
	}
	return info.Result, nil
}

// forgetSeedTasks empties the recent tasks of the inventory's making: it
// was made long ago (vCenter lists tasks of the last minutes).
func forgetSeedTasks(vctx *simulator.Context) {
	tm, ok := vctx.Map.Get(taskManagerRef).(*simulator.TaskManager)
	if !ok {
		return
	}
	for _, ref := range slices.Clone(tm.RecentTask) {
		var entity *types.ManagedObjectReference
		if t, ok := vctx.Map.Get(ref).(*simulator.Task); ok {
			entity = t.Info.Entity
		}
		forgetTask(vctx, ref, entity)
	}
}

var taskManagerRef = types.ManagedObjectReference{Type: "TaskManager", Value: "TaskManager"}

// forgetTask drops a finished task from TaskManager.recentTask, from its
// entity's recentTask and from the inventory.
func forgetTask(vctx *simulator.Context, ref types.ManagedObjectReference, entity *types.ManagedObjectReference) {
	drop := func(list []types.ManagedObjectReference) []types.ManagedObjectReference {
		return slices.DeleteFunc(slices.Clone(list), func(r types.ManagedObjectReference) bool { return r == ref })
	}
	if tm, ok := vctx.Map.Get(taskManagerRef).(*simulator.TaskManager); ok {
		vctx.WithLock(tm, func() {
			vctx.Update(tm, []types.PropertyChange{{Name: "recentTask", Val: drop(tm.RecentTask)}})
		})
	}
	if entity != nil {
		if e, ok := vctx.Map.Get(*entity).(mo.Entity); ok {
			vctx.WithLock(e, func() {
				vctx.Update(e, []types.PropertyChange{{Name: "recentTask", Val: drop(e.Entity().RecentTask)}})
			})
		}
	}
	vctx.Map.Remove(vctx, ref)
}

// methodFault is the fault of a failed in-process call.
func methodFault(err error) types.BaseMethodFault {
	if soap.IsSoapFault(err) {
		if f, ok := soap.ToSoapFault(err).VimFault().(types.BaseMethodFault); ok {
			return f
		}
	}
	return &types.SystemError{Reason: err.Error()}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// One method per entry of vmTaskMethods (the simulator finds a handler's
// method by name).

func (p *vmTasks) PowerOnVMTask(ctx *simulator.Context, r *types.PowerOnVM_Task) soap.HasFault {
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: p.start(ctx, r.This, "PowerOnVM_Task", callTask(methods.PowerOnVM_Task, r))}}
}

func (p *vmTasks) PowerOffVMTask(ctx *simulator.Context, r *types.PowerOffVM_Task) soap.HasFault {
	return &methods.PowerOffVM_TaskBody{Res: &types.PowerOffVM_TaskResponse{Returnval: p.start(ctx, r.This, "PowerOffVM_Task", callTask(methods.PowerOffVM_Task, r))}}
}

func (p *vmTasks) ResetVMTask(ctx *simulator.Context, r *types.ResetVM_Task) soap.HasFault {
	return &methods.ResetVM_TaskBody{Res: &types.ResetVM_TaskResponse{Returnval: p.start(ctx, r.This, "ResetVM_Task", callTask(methods.ResetVM_Task, r))}}
}

func (p *vmTasks) SuspendVMTask(ctx *simulator.Context, r *types.SuspendVM_Task) soap.HasFault {
	return &methods.SuspendVM_TaskBody{Res: &types.SuspendVM_TaskResponse{Returnval: p.start(ctx, r.This, "SuspendVM_Task", callTask(methods.SuspendVM_Task, r))}}
}

func (p *vmTasks) ReconfigVMTask(ctx *simulator.Context, r *types.ReconfigVM_Task) soap.HasFault {
	return &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: p.start(ctx, r.This, "ReconfigVM_Task", callTask(methods.ReconfigVM_Task, r))}}
}

func (p *vmTasks) RelocateVMTask(ctx *simulator.Context, r *types.RelocateVM_Task) soap.HasFault {
	return &methods.RelocateVM_TaskBody{Res: &types.RelocateVM_TaskResponse{Returnval: p.start(ctx, r.This, "RelocateVM_Task", callTask(methods.RelocateVM_Task, r))}}
}

func (p *vmTasks) CloneVMTask(ctx *simulator.Context, r *types.CloneVM_Task) soap.HasFault {
	return &methods.CloneVM_TaskBody{Res: &types.CloneVM_TaskResponse{Returnval: p.start(ctx, r.This, "CloneVM_Task", callTask(methods.CloneVM_Task, r))}}
}

func (p *vmTasks) DestroyTask(ctx *simulator.Context, r *types.Destroy_Task) soap.HasFault {
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: p.start(ctx, r.This, "Destroy_Task", callTask(methods.Destroy_Task, r))}}
}

func (p *vmTasks) CreateSnapshotTask(ctx *simulator.Context, r *types.CreateSnapshot_Task) soap.HasFault {
	return &methods.CreateSnapshot_TaskBody{Res: &types.CreateSnapshot_TaskResponse{Returnval: p.start(ctx, r.This, "CreateSnapshot_Task", callTask(methods.CreateSnapshot_Task, r))}}
}

func (p *vmTasks) CreateSnapshotExTask(ctx *simulator.Context, r *types.CreateSnapshotEx_Task) soap.HasFault {
	return &methods.CreateSnapshotEx_TaskBody{Res: &types.CreateSnapshotEx_TaskResponse{Returnval: p.start(ctx, r.This, "CreateSnapshotEx_Task", callTask(methods.CreateSnapshotEx_Task, r))}}
}

func (p *vmTasks) RemoveAllSnapshotsTask(ctx *simulator.Context, r *types.RemoveAllSnapshots_Task) soap.HasFault {
	return &methods.RemoveAllSnapshots_TaskBody{Res: &types.RemoveAllSnapshots_TaskResponse{Returnval: p.start(ctx, r.This, "RemoveAllSnapshots_Task", callTask(methods.RemoveAllSnapshots_Task, r))}}
}

func (p *vmTasks) RevertToCurrentSnapshotTask(ctx *simulator.Context, r *types.RevertToCurrentSnapshot_Task) soap.HasFault {
	return &methods.RevertToCurrentSnapshot_TaskBody{Res: &types.RevertToCurrentSnapshot_TaskResponse{Returnval: p.start(ctx, r.This, "RevertToCurrentSnapshot_Task", callTask(methods.RevertToCurrentSnapshot_Task, r))}}
}

func (p *vmTasks) RemoveSnapshotTask(ctx *simulator.Context, r *types.RemoveSnapshot_Task) soap.HasFault {
	return &methods.RemoveSnapshot_TaskBody{Res: &types.RemoveSnapshot_TaskResponse{Returnval: p.start(ctx, r.This, "RemoveSnapshot_Task", callTask(methods.RemoveSnapshot_Task, r))}}
}

func (p *vmTasks) RevertToSnapshotTask(ctx *simulator.Context, r *types.RevertToSnapshot_Task) soap.HasFault {
	return &methods.RevertToSnapshot_TaskBody{Res: &types.RevertToSnapshot_TaskResponse{Returnval: p.start(ctx, r.This, "RevertToSnapshot_Task", callTask(methods.RevertToSnapshot_Task, r))}}
}

// callTask makes an in-process call of the simulator's method and returns
// the task it started.
func callTask[Req, Res any](call func(context.Context, soap.RoundTripper, *Req) (*Res, error), r *Req) innerCall {
	return func(ctx context.Context, c *vim25.Client) (types.ManagedObjectReference, error) {
		res, err := call(ctx, c, r)
		if err != nil {
			return types.ManagedObjectReference{}, err
		}
		ref, _ := reflect.ValueOf(res).Elem().FieldByName("Returnval").Interface().(types.ManagedObjectReference)
		return ref, nil
	}
}
