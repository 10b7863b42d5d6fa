package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

// How the embedded vCenter runs a CNS task, as vCenter does:
//   - the call answers at once with a Task whose info.state is running and
//     whose info.progress moves for as long as the method's latency says;
//   - the operation's effect (a new volume, a disk on a VM, free space)
//     appears only when the task completes, together with its result;
//   - a task that reconfigures node VMs (attach, detach, their batches)
//     holds each of those VMs for its whole duration, as vCenter holds a
//     VM's lock while reconfiguring it: reconfigurations of one VM run one
//     after another, of different VMs side by side. A batch of several
//     disks for one VM is one reconfiguration;
//   - when the vCenter stops while a task runs, the task object goes with it
//     (a client asking for it afterwards gets ManagedObjectNotFound, as from
//     a restarted vCenter) and the operation either happened or did not:
//     StopOptions.RunningTasks says which (see Stop).
//
// Effects are applied under the manager's own locks, in one step, and
// written to the state directory before the task is reported complete.

// taskOp is one CNS task: its SOAP method, the node VMs it reconfigures,
// and the effect.
type taskOp struct {
	method string
	vms    []types.ManagedObjectReference
	run    func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault)
}

// taskSpec is any task the embedded vCenter runs (CNS's, a VM's, a
// neighbour's): what a real vCenter records of it (info.name,
// info.descriptionId, info.entity, info.reason, info.activationId) and
// what it does.
type taskSpec struct {
	method     string                       // info.name: the method that started it ("CnsCreateVolume", "MigrateVM_Task")
	unnamed    bool                         // info.name unset: an internal task of vCenter's own (DRS's); method only names it in events
	describe   string                       // info.descriptionId; "<entity type>.<method>" when empty
	entity     types.ManagedObjectReference // info.entity: what it is about
	reason     types.BaseTaskReason         // info.reason: who started it (a user, the system, a schedule, an alarm)
	activation string                       // info.activationId: the caller's operationID header, "" when none
	vms        []types.ManagedObjectReference
	duration   time.Duration
	run        func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault)
}

// TaskFate is what happens, when the vCenter stops, to an operation whose
// task is still running.
type TaskFate int

const (
	// TasksMayHappen: each such operation happens or not, at random, as
	// after a real vCenter restart ("the operation may or may not have
	// happened"; the client can't tell from the task, which is gone).
	TasksMayHappen TaskFate = iota
	// TasksAbandoned: none of them happens.
	TasksAbandoned
	// TasksComplete: all of them happen; nobody hears of it.
	TasksComplete
)

// lab holds what makes the embedded vCenter behave like a real one in time
// and in failure: the latency model, the per-VM reconfiguration queue, the
// injected faults, the event log, and the stop that ends running tasks.
type lab struct {
	latency atomic.Pointer[Latency]
	faults  faultSet
	events  eventLog
	vmQueue keyedMutex // one reconfiguration per VM at a time
	release release    // the vCenter release it answers as (server_release.go); set once at Start

	mu      sync.Mutex
	stopped bool
	fate    TaskFate
	stop    chan struct{} // closed when the vCenter stops
	tasks   sync.WaitGroup

	requests atomic.Int64 // SOAP requests answered (cns_seed.go: Requests)

	// internal makes an in-process client that faults and latency do not
	// apply to (vim_vmtasks.go); set once at Start.
	internal func(ctx context.Context) (context.Context, *vim25.Client, error)

	// maxTask is the highest task number handed out: persisted so that a
	// restarted vCenter never hands out a reference a client may still
	// hold from before (state.go).
	maxTask atomic.Int64
}

func newLab(l Latency) *lab {
	b := &lab{stop: make(chan struct{})}
	b.setLatency(l)
	return b
}

func (b *lab) setLatency(l Latency) {
	c := l.clone()
	b.latency.Store(&c)
}

func (b *lab) latencyOf(method string) time.Duration {
	return b.latency.Load().of(method)
}

// stopping is closed when the vCenter stops.
func (b *lab) stopping() <-chan struct{} { return b.stop }

// halt stops every running task (each decides its fate) and waits for
// them, at most wait.
func (b *lab) halt(fate TaskFate, wait time.Duration) {
	b.mu.Lock()
	if !b.stopped {
		b.stopped, b.fate = true, fate
		close(b.stop)
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.tasks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		klog.InfoS("Some CNS tasks did not end in time; the vCenter stops without them", "waited", wait)
	}
}

// happensAtStop decides whether a running task's operation happens when
// the vCenter stops.
func (b *lab) happensAtStop() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.fate {
	case TasksComplete:
		return true
	case TasksAbandoned:
		return false
	}
	return rand.IntN(2) == 0 //nolint:gosec // a coin, not security
}

// runTask starts a CNS task for op and returns its reference at once.
//
// As vCenter shows CNS's tasks: no info.name (they are CNS's, not a vim
// method's), a descriptionId com.vmware.cns.tasks.<operation> (ManageIQ's
// vSphere event parser and operators' task listings name
// com.vmware.cns.tasks.attachvolume, .detachvolume, .extendvolume,
// .updatevolume; the other operations' names are assumed to follow), and
// an attach's or detach's task on its VM (those listings find them among
// the VM's tasks).
func (m *volumeManager) runTask(ctx *simulator.Context, op taskOp) types.ManagedObjectReference {
	entity := m.ManagedObjectReference
	if vms := compactRefs(op.vms); len(vms) == 1 {
		entity = vms[0]
	}
	return m.lab.startTask(ctx.For(vim25.Path), taskSpec{
		method:     op.method,
		unnamed:    true,
		describe:   cnsTaskID(op.method),
		entity:     entity,
		reason:     callerReason(ctx),
		activation: ctx.Header.ID,
		vms:        op.vms,
		duration:   m.lab.latencyOf(op.method),
		run:        op.run,
	})
}

// cnsTaskID is the descriptionId of a CNS method's task.
func cnsTaskID(method string) string {
	op := strings.ToLower(strings.TrimPrefix(method, "Cns"))
	if op == "updatevolumemetadata" {
		op = "updatevolume"
	}
	return "com.vmware.cns.tasks." + op
}

// compactRefs is refs without repeats.
func compactRefs(refs []types.ManagedObjectReference) []types.ManagedObjectReference {
	var out []types.ManagedObjectReference
	for _, r := range refs {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// callerReason is info.reason of a task a SOAP call started: its
// session's user, as vCenter reports it (callerName).
func callerReason(ctx *simulator.Context) *types.TaskReasonUser {
	user := ""
	if ctx.Session != nil {
		user = ctx.Session.UserName
	}
	return &types.TaskReasonUser{UserName: callerName(user)}
}

// callerName is a user as vCenter names the initiator of a task: the
// SSO domain in capitals, a backslash, the user ("VSPHERE.LOCAL\\Administrator"
// for administrator@vsphere.local; the vSphere Client's Recent Tasks show
// the same in their Initiator column).
func callerName(user string) string {
	if name, domain, ok := strings.Cut(user, "@"); ok {
		return strings.ToUpper(domain) + `\` + name
	}
	if user == "" {
		return "vpxd-extension" // an in-process call: vCenter's own
	}
	return user
}

// startTask starts a task and returns its reference at once: running,
// its progress moving for spec.duration, then its effect (spec.run) and
// its outcome. See the comment at the top of this file.
func (b *lab) startTask(vctx *simulator.Context, spec taskSpec) types.ManagedObjectReference {
	t := simulator.CreateTask(spec.entity, spec.method, nil)
	t.Info.Name = spec.method
	if spec.unnamed {
		t.Info.Name = ""
	}
	if spec.describe != "" {
		t.Info.DescriptionId = spec.describe
	}
	t.Info.EntityName = entityName(vctx.Map, spec.entity)
	t.Info.Reason = spec.reason
	t.Info.ActivationId = spec.activation
	vctx.Map.Put(t)
	ref := t.Self
	if n, err := strconv.ParseInt(strings.TrimPrefix(ref.Value, "task-"), 10, 64); err == nil {
		for cur := b.maxTask.Load(); n > cur && !b.maxTask.CompareAndSwap(cur, n); cur = b.maxTask.Load() {
		}
	}
	vctx.Map.AtomicUpdate(vctx, t, []types.PropertyChange{
		{Name: "info.key", Val: ref.Value},
		{Name: "info.task", Val: ref},
		{Name: "info.startTime", Val: time.Now()},
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.progress", Val: int32(0)},
	})
	b.mu.Lock()
	stopped := b.stopped
	if !stopped {
		b.tasks.Add(1)
	}
	b.mu.Unlock()
	if stopped {
		return ref // the vCenter is going away: the task never ends
	}
	b.events.add(Event{Kind: EventTaskStart, Method: spec.method, Task: ref.Value})
	go func() {
		defer b.tasks.Done()
		res, fault, ended := b.execute(vctx, t, spec)
		if !ended {
			b.events.add(Event{Kind: EventTaskEnd, Method: spec.method, Task: ref.Value, Detail: "lost in the stop"})
			return
		}
		state, detail := types.TaskInfoStateSuccess, "success"
		var lf any
		if fault != nil {
			state, detail = types.TaskInfoStateError, fmt.Sprintf("%T", fault)
			lf = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: faultMessage(fault)}
		}
		vctx.Map.AtomicUpdate(vctx, t, []types.PropertyChange{
			{Name: "info.completeTime", Val: time.Now()},
			{Name: "info.progress", Val: int32(100)},
			{Name: "info.state", Val: state},
			{Name: "info.result", Val: res},
			{Name: "info.error", Val: lf},
		})
		b.events.add(Event{Kind: EventTaskEnd, Method: spec.method, Task: ref.Value, Detail: detail})
	}()
	return ref
}

// execute waits for the task's VMs and its duration, then applies its
// effect. ended is false when the vCenter stopped and the operation did
// not happen (the task then never completes).
func (b *lab) execute(vctx *simulator.Context, t *simulator.Task, spec taskSpec) (res types.AnyType, fault types.BaseMethodFault, ended bool) {
	defer func() { // never let a bug kill the process
		if r := recover(); r != nil {
			reason := fmt.Sprintf("internal error in %s: %v", spec.method, r)
			if strings.HasPrefix(spec.method, "Cns") {
				res, fault, ended = nil, &cnstypes.CnsFault{Reason: reason}, true
			} else {
				res, fault, ended = nil, &types.SystemError{Reason: reason}, true
			}
		}
	}()
	vms := make([]string, 0, len(spec.vms))
	for _, vm := range spec.vms {
		vms = append(vms, vm.Value)
	}
	sort.Strings(vms)
	vms = compactStrings(vms)
	for _, vm := range vms {
		unlock := b.vmQueue.lock(vm)
		defer unlock()
		b.events.add(Event{Kind: EventReconfigStart, Method: spec.method, Task: t.Self.Value, VM: vm})
		defer b.events.add(Event{Kind: EventReconfigEnd, Method: spec.method, Task: t.Self.Value, VM: vm})
	}
	if !b.wait(vctx, t, spec.duration) && !b.happensAtStop() {
		return nil, nil, false
	}
	if f := b.faults.taskError(spec.method); f != nil {
		b.events.add(Event{Kind: EventFault, Method: spec.method, Task: t.Self.Value, Detail: "TaskError"})
		return nil, f, true
	}
	res, fault = spec.run(vctx)
	return res, fault, true
}

// wait lets d pass with the task's progress moving; false when the vCenter
// stopped first.
func (b *lab) wait(vctx *simulator.Context, t *simulator.Task, d time.Duration) bool {
	stop := b.stopping()
	select {
	case <-stop:
		return false
	default:
	}
	if d <= 0 {
		return true
	}
	step := max(d/10, 250*time.Millisecond)
	start := time.Now()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return false
		case <-deadline.C:
			return true
		case <-tick.C:
			pct := int32(min(99, 100*time.Since(start)/d))
			vctx.Map.AtomicUpdate(vctx, t, []types.PropertyChange{{Name: "info.progress", Val: pct}})
		}
	}
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// faultMessage is a fault's first message, else its type.
func faultMessage(f types.BaseMethodFault) string {
	if mf := f.GetMethodFault(); mf != nil {
		for _, m := range mf.FaultMessage {
			if m.Message != "" {
				return m.Message
			}
		}
	}
	if cf, ok := f.(*cnstypes.CnsFault); ok && cf.Reason != "" {
		return cf.Reason
	}
	return fmt.Sprintf("%T", f)
}

// waitTask waits for a simulator task started in-process.
func waitTask(ctx *simulator.Context, ref types.ManagedObjectReference) types.TaskInfo {
	t, ok := ctx.Map.Get(ref).(*simulator.Task)
	if !ok {
		return types.TaskInfo{State: types.TaskInfoStateError, Error: &types.LocalizedMethodFault{
			Fault: &types.ManagedObjectNotFound{Obj: ref}, LocalizedMessage: "task " + ref.Value + " not found"}}
	}
	lockCtx := &simulator.Context{}
	for {
		var info types.TaskInfo
		done := false
		ctx.Map.WithLock(lockCtx, t, func() {
			switch t.Info.State {
			case types.TaskInfoStateSuccess, types.TaskInfoStateError:
				done, info = true, t.Info
			}
		})
		if done {
			return info
		}
		time.Sleep(time.Millisecond)
	}
}
