package vcenter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// Tasks. One watch (watch.go) follows TaskManager.recentTask: every task
// of every session, with its state, result, error, the user it runs for,
// and the operation ID its caller sent (info.activationId). Operations
// wait on their task through the taskWaiter instead of a collector each.
//
// The waiter also knows which running tasks may be this cluster's own and
// have no operation of this process waiting for them: tasks of a
// controller that was restarted or lost its leadership, or of the other
// replica, tasks whose start was answered in a reply that got lost, tasks
// whose waiter gave up. An operation that must not be done twice (a
// create, a snapshot) or that must not answer before an attach ends (a
// detach) waits for those of them that could have made or changed the
// same object first (settle), and then looks again.
//
// What makes a task one of those: every call of the driver that starts a
// task carries an operation ID (opid: this cluster, the kind of operation,
// the object), which vCenter records on the task as info.activationId. A
// task is in doubt for an operation when it runs for the driver's vCenter
// user, no operation of this process owns it, and its operation ID names
// this cluster and an operation on the same object. Tasks of DRS, Storage
// DRS, schedules and alarms (no user), of other users, of other kinds
// (a VM's migration, a backup's snapshot) and of other clusters' drivers
// (another cluster ID; or no operation ID where vCenter records them) are
// never in doubt. Where vCenter does not record operation IDs (no task
// seen so far carries one), a task of the driver's user without one is in
// doubt when its method is one that could have made the object: the safe
// side, as the driver did before operation IDs.

const (
	// doneTaskTTL is how long a finished task's outcome is kept, so that a
	// Wait that comes after the task finished still finds it.
	doneTaskTTL = 10 * time.Minute
	// taskFallback*: a waiter whose task the watch has not reported reads
	// the task itself, soon when the watch is down, rarely when it is up.
	taskFallbackDown = 3 * time.Second
	taskFallbackUp   = 30 * time.Second
	// uncertainPause lets a vCenter that was slow to answer a call that
	// changes something register its task before settle reads them.
	uncertainPause = time.Second
)

// errTaskLost: the task is gone from vCenter before it finished (vCenter
// restarted): its operation may or may not have happened. errUncertain:
// the answer to a call that changes something was lost. Both are
// ErrUnavailable to callers (try again); the operations that must not be
// done twice settle them first (volumes.go, snapshots.go).
var (
	errTaskLost  = fmt.Errorf("%w: vCenter lost the task (it restarted?); the operation may or may not have happened", ErrUnavailable)
	errUncertain = fmt.Errorf("%w: vCenter's answer was lost; the operation may have been done", ErrUnavailable)
)

// taskOutcome is what is known of a task.
type taskOutcome struct {
	state  types.TaskInfoState
	result any
	fault  *types.LocalizedMethodFault
	user   string    // normalized (user@domain, lower case); "" when not reported
	name   string    // info.name: the method that started it
	descID string    // info.descriptionId
	opID   string    // info.activationId: its caller's operation ID
	at     time.Time // when it finished
	lost   bool      // gone before it finished
}

func (t *taskOutcome) finished() bool {
	return t.lost || t.state == types.TaskInfoStateSuccess || t.state == types.TaskInfoStateError
}

// taskWaiter follows every task through the one watch: the watch feeds it
// Task.info changes, callers wait on a task by reference.
type taskWaiter struct {
	obs Observer

	mu      sync.Mutex
	live    map[string]*taskOutcome // seen, not finished
	done    map[string]*taskOutcome
	waiters map[string][]chan struct{}
	waiting int
	// owners counts, per task, the operations of this process that started
	// it and wait for it: a task with none is in doubt.
	owners map[string]int
	// starting holds the calls that may be starting a task whose
	// reference they have not got yet, with their operation (settle waits
	// for those of its operations begun before it).
	starting map[uint64]objectOp
	// opIDsSeen: a task with an operation ID of this driver's form has
	// been seen, so vCenter records operation IDs (tasks without one are
	// no driver's of this kind).
	opIDsSeen bool
	// gen counts the watch's starts: a new one may have missed tasks.
	gen uint64
	// cluster is this cluster's opid.Tag; onOtherCreate hears of each
	// create of this cluster that no operation of this process owns
	// (names.go).
	cluster       string
	onOtherCreate func(key string)
	nextCall      uint64
	started       *sync.Cond
	// wake tells the watch that a task is now waited on.
	wake chan struct{}
}

func newTaskWaiter(obs Observer) *taskWaiter {
	w := &taskWaiter{
		obs:      obs,
		live:     map[string]*taskOutcome{},
		done:     map[string]*taskOutcome{},
		waiters:  map[string][]chan struct{}{},
		owners:   map[string]int{},
		starting: map[uint64]objectOp{},
		wake:     make(chan struct{}, 1),
	}
	w.started = sync.NewCond(&w.mu)
	return w
}

// inFlight is the number of waiters.
func (w *taskWaiter) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.waiting
}

// apply takes one Task object update of the watch.
func (w *taskWaiter) apply(u types.ObjectUpdate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := u.Obj.Value
	if _, finished := w.done[key]; finished {
		return
	}
	if u.Kind == types.ObjectUpdateKindLeave {
		// Dropped from recentTask; a waiter falls back to reading it.
		delete(w.live, key)
		return
	}
	t := w.live[key]
	if t == nil {
		t = &taskOutcome{}
		w.live[key] = t
	}
	for _, c := range u.ChangeSet {
		t.set(c.Name, c.Val)
	}
	w.noteLocked(key, t)
	if t.finished() {
		w.finishLocked(key, t)
	}
}

// noteLocked notes what a task's operation ID tells: that vCenter records
// operation IDs, and a create of this cluster another process started.
func (w *taskWaiter) noteLocked(key string, t *taskOutcome) {
	tok, ok := opid.Parse(t.opID)
	if !ok {
		return
	}
	if !w.opIDsSeen {
		w.opIDsSeen = true
		klog.V(2).InfoS("vCenter records the operation IDs of task callers: only this cluster's tasks on the same object are waited for")
	}
	if tok.Op == opid.Create && tok.Cluster == w.cluster && w.owners[key] == 0 && w.onOtherCreate != nil {
		w.onOtherCreate(tok.Key)
	}
}

// generation is the watch's current start (newGeneration).
func (w *taskWaiter) generation() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// newGeneration marks a new start of the watch.
func (w *taskWaiter) newGeneration() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
}

// recordsOpIDs says whether vCenter is known to record operation IDs.
func (w *taskWaiter) recordsOpIDs() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.opIDsSeen
}

// set takes one property of Task.info.
func (t *taskOutcome) set(name string, val any) {
	switch name {
	case "info.state":
		t.state, _ = val.(types.TaskInfoState)
	case "info.result":
		t.result = val
	case "info.error":
		switch f := val.(type) {
		case types.LocalizedMethodFault:
			t.fault = &f
		case *types.LocalizedMethodFault:
			t.fault = f
		default:
			t.fault = nil
		}
	case "info.reason":
		if r, ok := val.(*types.TaskReasonUser); ok {
			t.user = normalizeUser(r.UserName)
		} else if r, ok := val.(types.TaskReasonUser); ok {
			t.user = normalizeUser(r.UserName)
		}
	case "info.name":
		t.name, _ = val.(string)
	case "info.descriptionId":
		t.descID, _ = val.(string)
	case "info.activationId":
		t.opID, _ = val.(string)
	}
}

// normalizeUser makes "DOMAIN\user" and "user@domain" the same, lower case.
func normalizeUser(u string) string {
	u = strings.ToLower(u)
	if dom, name, ok := strings.Cut(u, `\`); ok {
		return name + "@" + dom
	}
	return u
}

func (w *taskWaiter) finishLocked(key string, t *taskOutcome) {
	t.at = time.Now()
	delete(w.live, key)
	w.done[key] = t
	for _, ch := range w.waiters[key] {
		close(ch)
	}
	delete(w.waiters, key)
}

// prune forgets finished tasks older than doneTaskTTL.
func (w *taskWaiter) prune(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, t := range w.done {
		if now.Sub(t.at) > doneTaskTTL {
			delete(w.done, k)
		}
	}
}

// lookup reports the task's outcome when finished, and whether the watch
// has reported the task at all.
func (w *taskWaiter) lookup(key string) (*taskOutcome, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.done[key]; ok {
		return t, true
	}
	_, ok := w.live[key]
	return nil, ok
}

// register adds a waiter for the task (an owner's when owner); nil when it
// has already finished.
func (w *taskWaiter) register(key string, owner bool) (chan struct{}, *taskOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.done[key]; ok {
		return nil, t
	}
	ch := make(chan struct{})
	w.waiters[key] = append(w.waiters[key], ch)
	if owner {
		w.owners[key]++
	}
	w.waiting++
	w.obs.TasksInFlight(w.waiting)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return ch, nil
}

func (w *taskWaiter) unregister(key string, ch chan struct{}, owner bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.waiters[key]
	for i, c := range list {
		if c == ch {
			w.waiters[key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(w.waiters[key]) == 0 {
		delete(w.waiters, key)
	}
	if owner {
		if w.owners[key]--; w.owners[key] <= 0 {
			delete(w.owners, key)
		}
	}
	w.waiting--
	w.obs.TasksInFlight(w.waiting)
}

// complete records an outcome read directly (the fallback path).
func (w *taskWaiter) complete(key string, t *taskOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteLocked(key, t)
	if _, ok := w.done[key]; !ok {
		w.finishLocked(key, t)
	}
}

// note records what a direct read said of a task still running.
func (w *taskWaiter) note(key string, t *taskOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteLocked(key, t)
	if _, ok := w.done[key]; !ok {
		w.live[key] = t
	}
}

// beginStart marks a call that may start a task of operation o;
// endStart unmarks it once the call has answered (and its task, if any,
// has an owner).
func (w *taskWaiter) beginStart(o objectOp) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextCall++
	w.starting[w.nextCall] = o
	return w.nextCall
}

func (w *taskWaiter) endStart(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.starting, id)
	w.started.Broadcast()
}

// waitStarts waits until the calls of the operations ops begun up to now
// have answered.
func (w *taskWaiter) waitStarts(ops []objectOp) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mark := w.nextCall
	for {
		pending := false
		for id, o := range w.starting {
			if id <= mark && slices.Contains(ops, o) {
				pending = true
				break
			}
		}
		if !pending {
			return
		}
		w.started.Wait()
	}
}

// objectOp is an operation on an object as operation IDs name them: the
// kind (opid.Create, …) and the tag of the object's key (opid.Tag).
type objectOp struct{ kind, key string }

// opOn is the objectOp of kind on the object whose key is key.
func opOn(kind, key string) objectOp { return objectOp{kind, opid.Tag(key)} }

// opVerbs name, per kind of operation, what a task without an operation
// ID is judged by: its method (info.name "CnsCreateVolume") or its
// descriptionId ("com.vmware.cns.tasks.createvolume", as vCenter shows
// CNS's tasks) mentions CNS and the verb.
var opVerbs = map[string]string{
	opid.Create: "createvolume", opid.Snapshot: "createsnapshot",
	opid.Attach: "attachvolume", opid.Detach: "detachvolume",
}

// inDoubt lists the running tasks that no operation of this process owns
// and that could be an operation of ops by this cluster (its opid.Tag),
// run for user: see the comment at the top of this file.
func (w *taskWaiter) inDoubt(user, cluster string, ops []objectOp) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for k, t := range w.live {
		if t.finished() || w.owners[k] > 0 || t.user == "" || t.user != user {
			continue
		}
		if tok, ok := opid.Parse(t.opID); ok {
			if tok.Cluster == cluster && slices.Contains(ops, objectOp{tok.Op, tok.Key}) {
				keys = append(keys, k)
			}
			continue
		}
		if !w.opIDsSeen && t.mayBe(ops) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// mayBe says whether a task without an operation ID may be one of ops:
// a CNS task whose method is one of theirs, or one that names no method.
func (t *taskOutcome) mayBe(ops []objectOp) bool {
	if t.name == "" && t.descID == "" {
		return true
	}
	what := letters(t.name + " " + t.descID)
	if !strings.Contains(what, "cns") {
		return false
	}
	for _, o := range ops {
		if v := opVerbs[o.kind]; v != "" && strings.Contains(what, v) {
			return true
		}
	}
	return false
}

// letters is s in lower case without what is not a letter or a digit.
func letters(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fetchFunc reads a task's info directly from vCenter.
type fetchFunc func(ctx context.Context, task types.ManagedObjectReference) (*taskOutcome, error)

// wait blocks until the task finishes, the context ends, or (through the
// fallback) a direct read finds it finished or gone. owner says that the
// caller started the task. A task that failed returns its fault as an
// error; one that is gone, errTaskLost.
func (w *taskWaiter) wait(ctx context.Context, task types.ManagedObjectReference, owner bool, fetch fetchFunc, watchHealthy func() bool) (*taskOutcome, error) {
	key := task.Value
	ch, t := w.register(key, owner)
	return w.waitRegistered(ctx, task, owner, ch, t, fetch, watchHealthy)
}

// waitRegistered is wait for a task already registered.
func (w *taskWaiter) waitRegistered(ctx context.Context, task types.ManagedObjectReference, owner bool, ch chan struct{}, t *taskOutcome, fetch fetchFunc, watchHealthy func() bool) (*taskOutcome, error) {
	key := task.Value
	if t == nil {
		defer w.unregister(key, ch, owner)
		every := func() time.Duration {
			if watchHealthy() {
				return taskFallbackUp
			}
			return taskFallbackDown
		}
		timer := time.NewTimer(every())
		defer timer.Stop()
		for t == nil {
			select {
			case <-ch:
				t, _ = w.lookup(key)
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for task %s: %w", key, ctx.Err())
			case <-timer.C:
				timer.Reset(every())
				// Even with the watch up, a task not reported finished
				// by now is read: an answer of the watch may have been
				// lost with its connection.
				klog.V(2).InfoS("Reading task info directly", "task", key)
				got, err := fetch(ctx, task)
				switch {
				case isTaskGone(err):
					got, err = &taskOutcome{lost: true}, nil
				case err != nil:
					klog.V(2).InfoS("Reading task info failed", "task", key, "err", err)
					continue
				}
				if got.finished() {
					w.complete(key, got)
					t = got
				}
			}
		}
	}
	switch {
	case t.lost:
		return t, fmt.Errorf("task %s: %w", key, errTaskLost)
	case t.state == types.TaskInfoStateError && t.fault == nil:
		return t, fmt.Errorf("task %s failed", key)
	case t.state == types.TaskInfoStateError:
		return t, localizedError(t.fault)
	}
	return t, nil
}

// taskProps are the Task properties the watch and direct reads follow.
var taskProps = []string{"info.state", "info.result", "info.error", "info.reason", "info.name", "info.descriptionId", "info.activationId"}

// fetchTask reads a task's outcome directly: the waiter's fallback.
func (c *client) fetchTask(ctx context.Context, task types.ManagedObjectReference) (*taskOutcome, error) {
	var t mo.Task
	if err := property.DefaultCollector(c.conn.vim).RetrieveOne(ctx, task, []string{"info"}, &t); err != nil {
		return nil, err
	}
	out := &taskOutcome{state: t.Info.State, result: t.Info.Result, fault: t.Info.Error,
		name: t.Info.Name, descID: t.Info.DescriptionId, opID: t.Info.ActivationId}
	if r, ok := t.Info.Reason.(*types.TaskReasonUser); ok {
		out.user = normalizeUser(r.UserName)
	}
	return out, nil
}

// startFunc makes the call that starts a task, with ctx (which carries
// the call's operation ID).
type startFunc func(ctx context.Context) (*object.Task, error)

// runTask starts a task of operation kind on the object key names
// (startTask) and waits for it.
func (c *client) runTask(ctx context.Context, kind, key string, notFound error, start startFunc) (*taskOutcome, types.ManagedObjectReference, error) {
	ref, ch, done, err := c.startTask(ctx, kind, key, notFound, start)
	if err != nil {
		return nil, ref, err
	}
	out, err := c.tasks.waitRegistered(ctx, ref, true, ch, done, c.fetchTask, c.watchUp)
	return out, ref, err
}

// startTask makes a call that starts a task, sending its operation ID
// (opid: this cluster, kind, key), and owns the task before anyone
// settling can count it as in doubt. A call whose answer was lost gives
// errUncertain: its task may exist, owned by nobody.
func (c *client) startTask(ctx context.Context, kind, key string, notFound error, start startFunc) (types.ManagedObjectReference, chan struct{}, *taskOutcome, error) {
	id := c.tasks.beginStart(opOn(kind, key))
	defer c.tasks.endStart(id)
	opID := opid.New(c.opts.ClusterID, kind, key)
	task, err := start(context.WithValue(ctx, types.ID{}, opID))
	if err != nil {
		if uncertain(err) && ctx.Err() == nil {
			return types.ManagedObjectReference{}, nil, nil, fmt.Errorf("%w (%v; vCenter operation ID %s)", errUncertain, err, opID)
		}
		if uncertain(err) {
			return types.ManagedObjectReference{}, nil, nil, fmt.Errorf("%w (%w; vCenter operation ID %s)", errUncertain, ctx.Err(), opID)
		}
		return types.ManagedObjectReference{}, nil, nil, mapFault(err, notFound)
	}
	ref := task.Reference()
	ch, t := c.tasks.register(ref.Value, true)
	klog.V(5).InfoS("Task started", "task", ref.Value, "opID", opID)
	return ref, ch, t, nil
}

func (c *client) watchUp() bool { return c.Healthy(context.Background()) == nil }

// settle waits until no task is in doubt for the operations ops: running
// for the driver's user, with no operation of this process waiting for
// it, and possibly this cluster's operation on the same object (inDoubt).
// Nothing is read from vCenter unless direct (after an uncertain call,
// when the watch may not have seen its task yet) or the watch is down:
// then recentTask is read once. It returns how many tasks it waited for.
func (c *client) settle(ctx context.Context, direct bool, ops ...objectOp) (int, error) {
	c.tasks.waitStarts(ops)
	if direct || !c.watchUp() {
		if direct {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(uncertainPause):
			}
		}
		if err := c.readRecentTasks(ctx); err != nil {
			return 0, fmt.Errorf("read vCenter's running tasks: %w", err)
		}
	}
	user := normalizeUser(c.conn.user.Load().Username())
	keys := c.tasks.inDoubt(user, opid.Tag(c.opts.ClusterID), ops)
	if len(keys) == 0 {
		return 0, nil
	}
	klog.InfoS("Waiting for tasks that may be this cluster's on the same object, which no operation of this controller waits for (of an earlier controller or the other replica, or whose start was not answered)",
		"tasks", keys, "operation", ops[0].kind)
	c.tasks.obs.TasksInDoubt(ops[0].kind, len(keys))
	for _, k := range keys {
		ref := types.ManagedObjectReference{Type: "Task", Value: k}
		if _, err := c.tasks.wait(ctx, ref, false, c.fetchTask, c.watchUp); err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return len(keys), err
		}
	}
	return len(keys), nil
}

// readRecentTasks reads TaskManager.recentTask and its tasks' info in one
// call and tells the waiter. A task the waiter thought running that is
// not there any more is read on its own: gone means lost.
func (c *client) readRecentTasks(ctx context.Context) error {
	vim := c.conn.vim
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{
			Obj:       *vim.ServiceContent.TaskManager,
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "TaskManager", Path: "recentTask"}},
		}},
		PropSet: []types.PropertySpec{{Type: "Task", PathSet: taskProps}},
	}
	res, err := property.DefaultCollector(vim).RetrieveProperties(ctx, types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{spec}})
	if err != nil {
		return mapFault(err, nil)
	}
	seen := map[string]bool{}
	for _, oc := range res.Returnval {
		t := &taskOutcome{}
		for _, p := range oc.PropSet {
			t.set(p.Name, p.Val)
		}
		seen[oc.Obj.Value] = true
		if t.finished() {
			c.tasks.complete(oc.Obj.Value, t)
		} else {
			c.tasks.note(oc.Obj.Value, t)
		}
	}
	return c.checkMissing(ctx, seen)
}

// checkMissing reads, one by one, the running tasks the waiter knows of
// that a full reading of recentTask did not list: finished long ago, or
// lost in a vCenter restart.
func (c *client) checkMissing(ctx context.Context, seen map[string]bool) error {
	for _, k := range c.tasks.liveKeys() {
		if seen[k] {
			continue
		}
		ref := types.ManagedObjectReference{Type: "Task", Value: k}
		got, err := c.fetchTask(ctx, ref)
		switch {
		case isTaskGone(err):
			klog.InfoS("A running task is gone from vCenter", "task", k)
			c.tasks.complete(k, &taskOutcome{lost: true})
		case err != nil:
			return mapFault(err, nil)
		case got.finished():
			c.tasks.complete(k, got)
		default:
			c.tasks.note(k, got)
		}
	}
	return nil
}

// liveKeys lists the tasks the waiter knows as running, and those waited
// for that it has not seen.
func (w *taskWaiter) liveKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.live)+len(w.waiters))
	for k := range w.live {
		keys = append(keys, k)
	}
	for k := range w.waiters {
		if _, ok := w.live[k]; !ok {
			keys = append(keys, k)
		}
	}
	return keys
}
