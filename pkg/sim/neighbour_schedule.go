package sim

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Scheduled power operations of unrelated VMs, as neighbour_tasks.go
// describes them.

// scheduledPower powers an unrelated VM off (or on, when it is off), as a
// scheduled task does.
func (nb *neighbourhood) scheduledPower(vctx *simulator.Context, d time.Duration) (taskSpec, error) {
	st, ok := nb.find(vctx, nb.vmLists(false, NeighbourWorkload), func(st vmState) bool { return !st.template })
	if !ok {
		return taskSpec{}, errNoCandidate
	}
	method, describe, what := "PowerOnVM_Task", "VirtualMachine.powerOn", "Morning power-on of "
	var inner innerCall = callTask(methods.PowerOnVM_Task, &types.PowerOnVM_Task{This: st.ref})
	if st.on {
		method, describe, what = "PowerOffVM_Task", "VirtualMachine.powerOff", "Nightly power-off of "
		inner = callTask(methods.PowerOffVM_Task, &types.PowerOffVM_Task{This: st.ref})
	}
	name := what + st.name
	sched := nb.scheduledTask(vctx, st, name, method)
	return taskSpec{
		method: method, describe: describe,
		entity: st.ref, reason: &types.TaskReasonSchedule{Name: name, ScheduledTask: sched},
		vms:      []types.ManagedObjectReference{st.ref},
		duration: nb.spread(Realistic[method], d),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			return nb.inner(vctx, inner)
		},
	}, nil
}

// scheduledTask is the ScheduledTask object that runs method on a VM,
// made the first time it is needed (the simulator has no
// ScheduledTaskManager; the object is there for the reference a task's
// reason carries).
func (nb *neighbourhood) scheduledTask(vctx *simulator.Context, st vmState, name, method string) types.ManagedObjectReference {
	key := st.ref.Value + "/" + method
	nb.mu.Lock()
	defer nb.mu.Unlock()
	if ref, ok := nb.sched[key]; ok {
		return ref
	}
	hour := int32(22)
	if method == "PowerOnVM_Task" {
		hour = 6
	}
	t := &mo.ScheduledTask{}
	t.Self.Type = "ScheduledTask"
	t.Info = types.ScheduledTaskInfo{
		ScheduledTaskSpec: types.ScheduledTaskSpec{
			Name: name, Description: fmt.Sprintf("%s at %02d:00 every day", strings.TrimSuffix(method, "VM_Task"), hour), Enabled: true,
			Scheduler: &types.DailyTaskScheduler{Hour: hour},
			Action:    &types.MethodAction{Name: method},
		},
		Entity: st.ref, State: types.TaskInfoStateSuccess,
		LastModifiedUser: `VSPHERE.LOCAL\Administrator`, LastModifiedTime: time.Now().Add(-30 * 24 * time.Hour),
	}
	vctx.Map.Put(t)
	vctx.WithLock(t, func() { t.Info.ScheduledTask = t.Self })
	nb.sched[key] = t.Self
	return t.Self
}
