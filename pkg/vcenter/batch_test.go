package vcenter

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

// TestAttachesBatchPerNode: attaches to one node VM that arrive while a
// CnsAttachVolume for it is in flight go together in the next one: here 6
// volumes (one of them unknown to CNS) wait behind a call in flight and
// then cost one CnsAttachVolume; each caller gets its own disk UUID or its
// own error.
func TestAttachesBatchPerNode(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	node := e.sim.NodeVMs()[0]
	vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: node.Ref}
	var ids []string
	for i := range 5 {
		v, err := e.c.CreateVolume(ctx, CreateSpec{Name: fmt.Sprintf("pvc-batch-%d", i), CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, e.c, "")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	const unknown = "0badc0de-0000-4000-8000-000000000000"
	ids = append(ids, unknown)

	// A call for the VM is in flight: hold its queue as the drain would.
	q := &vmQueue{running: true}
	e.c.attaches.mu.Lock()
	e.c.attaches.byNode = map[types.ManagedObjectReference]*vmQueue{vm: q}
	e.c.attaches.mu.Unlock()

	mark := e.rec.mark()
	disks := make([]string, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { disks[i], errs[i] = e.c.AttachVolume(ctx, id, node.UUID) })
	}
	for queued := 0; queued < len(ids); time.Sleep(time.Millisecond) {
		e.c.attaches.mu.Lock()
		queued = len(q.pending)
		e.c.attaches.mu.Unlock()
	}
	go e.c.drain(&e.c.attaches, vm, q, 0) // the call in flight ends
	wg.Wait()

	seen := map[string]bool{}
	for i, id := range ids {
		if id == unknown {
			if !errors.Is(errs[i], ErrVolumeNotFound) {
				t.Errorf("attach of unknown volume: %v, want ErrVolumeNotFound", errs[i])
			}
			continue
		}
		if errs[i] != nil || len(disks[i]) != 32 || seen[disks[i]] {
			t.Errorf("attach %s: disk %q, %v; want its own 32-hex-digit disk UUID", id, disks[i], errs[i])
		}
		seen[disks[i]] = true
	}
	var attaches []string
	for _, m := range e.rec.since(mark) {
		if strings.HasPrefix(m, "CnsAttachVolume") {
			attaches = append(attaches, m)
		}
	}
	if len(attaches) != 1 {
		t.Errorf("%d CnsAttachVolume calls for %d volumes queued behind a call in flight, want 1: %v", len(attaches), len(ids), attaches)
	}
	// Each is attached as the inventory sees it, and a lone attach goes alone.
	for _, id := range ids[:5] {
		if again, err := e.c.AttachVolume(ctx, id, node.UUID); err != nil || !seen[again] {
			t.Errorf("attach %s again: %q, %v; want its disk UUID, no call", id, again, err)
		}
	}
	e.c.attaches.mu.Lock()
	left := len(e.c.attaches.byNode)
	e.c.attaches.mu.Unlock()
	if left != 0 {
		t.Errorf("%d attach queues left after the attaches ended", left)
	}
}

// TestDetachesBatchPerNode (issue 14): detaches from one node VM that
// arrive while a CnsDetachVolume for it is in flight go together in the
// next one, each caller with its own result: here 5 volumes, one call.
func TestDetachesBatchPerNode(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	node := e.sim.NodeVMs()[0]
	vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: node.Ref}
	var ids []string
	for i := range 5 {
		v, err := e.c.CreateVolume(ctx, CreateSpec{Name: fmt.Sprintf("pvc-detach-%d", i), CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, e.c, "")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.AttachVolume(ctx, v.ID, node.UUID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	q := &vmQueue{running: true}
	e.c.detaches.mu.Lock()
	e.c.detaches.byNode = map[types.ManagedObjectReference]*vmQueue{vm: q}
	e.c.detaches.mu.Unlock()
	mark := e.rec.mark()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = e.c.DetachVolume(ctx, id, node.UUID) })
	}
	for queued := 0; queued < len(ids); time.Sleep(time.Millisecond) {
		e.c.detaches.mu.Lock()
		queued = len(q.pending)
		e.c.detaches.mu.Unlock()
	}
	go e.c.drain(&e.c.detaches, vm, q, 0)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("detach %s: %v", ids[i], err)
		}
	}
	detaches := 0
	for _, m := range e.rec.since(mark) {
		if strings.HasPrefix(m, "CnsDetachVolume") {
			detaches++
		}
	}
	if detaches != 1 {
		t.Errorf("%d CnsDetachVolume calls for %d volumes queued behind a call in flight, want 1", detaches, len(ids))
	}
	for _, v := range e.sim.Volumes() {
		if v.VM != "" {
			t.Errorf("volume %s still attached to %s", v.ID, v.VM)
		}
	}
}

// TestAttachesArrivingTogetherShareOneCall: attaches to an idle VM that
// arrive within the gather window go in one CnsAttachVolume, not the first
// alone and the others in a second (the window is widened here so that a
// loaded machine's scheduling can't split them).
func TestAttachesArrivingTogetherShareOneCall(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.c.attaches.gather = time.Second
	ctx := ctxT(t)
	node := e.sim.NodeVMs()[0]
	var ids []string
	for i := range 4 {
		v, err := e.c.CreateVolume(ctx, CreateSpec{Name: fmt.Sprintf("pvc-together-%d", i), CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, e.c, "")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	mark := e.rec.mark()
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = e.c.AttachVolume(ctx, id, node.UUID) })
	}
	wg.Wait()
	calls := 0
	for _, m := range e.rec.since(mark) {
		if strings.HasPrefix(m, "CnsAttachVolume") {
			calls++
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("attach %s: %v", ids[i], err)
		}
	}
	if calls != 1 {
		t.Errorf("%d CnsAttachVolume calls for %d attaches arriving together at an idle VM, want 1", calls, len(ids))
	}
}
