package vcenter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

const (
	// doneTaskTTL is how long a finished task's outcome is kept, so that a
	// Wait that comes after the task finished still finds it.
	doneTaskTTL = 10 * time.Minute
	// taskFallbackInterval: a waiter whose task the watch has not reported
	// for this long reads the task's info itself (the watch may be down, or
	// the task may have slipped out of recentTask).
	taskFallbackInterval = 30 * time.Second
)

// taskOutcome is a finished task's result or fault.
type taskOutcome struct {
	state  types.TaskInfoState
	result any
	fault  *types.LocalizedMethodFault
	at     time.Time
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
	// wake tells the watch that a task is now waited on.
	wake chan struct{}
}

func newTaskWaiter(obs Observer) *taskWaiter {
	return &taskWaiter{
		obs:     obs,
		live:    map[string]*taskOutcome{},
		done:    map[string]*taskOutcome{},
		waiters: map[string][]chan struct{}{},
		wake:    make(chan struct{}, 1),
	}
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
		switch c.Name {
		case "info.state":
			t.state, _ = c.Val.(types.TaskInfoState)
		case "info.result":
			t.result = c.Val
		case "info.error":
			switch f := c.Val.(type) {
			case types.LocalizedMethodFault:
				t.fault = &f
			case *types.LocalizedMethodFault:
				t.fault = f
			default:
				t.fault = nil
			}
		}
	}
	if t.state == types.TaskInfoStateSuccess || t.state == types.TaskInfoStateError {
		w.finishLocked(key, t)
	}
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

// seen reports the task's outcome when finished, and whether the watch has
// reported the task at all.
func (w *taskWaiter) lookup(key string) (*taskOutcome, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.done[key]; ok {
		return t, true
	}
	_, ok := w.live[key]
	return nil, ok
}

// register adds a waiter for the task; nil when it has already finished.
func (w *taskWaiter) register(key string) (chan struct{}, *taskOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.done[key]; ok {
		return nil, t
	}
	ch := make(chan struct{})
	w.waiters[key] = append(w.waiters[key], ch)
	w.waiting++
	w.obs.TasksInFlight(w.waiting)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return ch, nil
}

func (w *taskWaiter) unregister(key string, ch chan struct{}) {
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
	w.waiting--
	w.obs.TasksInFlight(w.waiting)
}

// complete records an outcome read directly (the fallback path).
func (w *taskWaiter) complete(key string, t *taskOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.done[key]; !ok {
		w.finishLocked(key, t)
	}
}

// fetchFunc reads a task's info directly from vCenter.
type fetchFunc func(ctx context.Context, task types.ManagedObjectReference) (*taskOutcome, error)

// wait blocks until the task finishes, the context ends, or (through the
// fallback) a direct read finds it finished. A task that failed returns its
// fault as an error.
func (w *taskWaiter) wait(ctx context.Context, task types.ManagedObjectReference, fetch fetchFunc, watchHealthy func() bool) (*taskOutcome, error) {
	key := task.Value
	ch, t := w.register(key)
	if t == nil {
		defer w.unregister(key, ch)
		timer := time.NewTimer(taskFallbackInterval)
		defer timer.Stop()
		for t == nil {
			select {
			case <-ch:
				t, _ = w.lookup(key)
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for task %s: %w", key, ctx.Err())
			case <-timer.C:
				timer.Reset(taskFallbackInterval)
				if _, seen := w.lookup(key); seen && watchHealthy() {
					continue
				}
				klog.V(2).InfoS("Reading task info directly", "task", key)
				got, err := fetch(ctx, task)
				if err != nil {
					klog.V(2).InfoS("Reading task info failed", "task", key, "err", err)
					continue
				}
				if got.state == types.TaskInfoStateSuccess || got.state == types.TaskInfoStateError {
					w.complete(key, got)
					t = got
				}
			}
		}
	}
	if t.state == types.TaskInfoStateError {
		if t.fault == nil {
			return t, fmt.Errorf("task %s failed", key)
		}
		return t, localizedError(t.fault)
	}
	return t, nil
}
