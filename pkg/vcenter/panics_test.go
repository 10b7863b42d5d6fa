package vcenter

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

// Panics injected in the client's background goroutines (a bug there
// would otherwise end the process: the gRPC interceptor's recover does
// not reach them). Each answers the affected call with panics.ErrPanic
// (Internal) or restarts the work, and the client goes on.

// TestPanicInAttachBatch: the batch's CNS call panics; its callers get
// the error, the VM's queue is freed and the next attach goes through.
func TestPanicInAttachBatch(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	node := e.sim.NodeVMs()[0]
	v, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-panic-batch", CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, e.c, "")})
	if err != nil {
		t.Fatal(err)
	}
	call := e.c.attaches.call
	var calls atomic.Int32
	e.c.attaches.call = func(ctx context.Context, specs []cnstypes.CnsVolumeAttachDetachSpec) (*object.Task, error) {
		if calls.Add(1) == 1 {
			var m map[string]bool
			m["injected"] = true // a bug in the drain's goroutine
		}
		return call(ctx, specs)
	}
	if _, err := e.c.AttachVolume(ctx, v.ID, node.UUID); !errors.Is(err, panics.ErrPanic) {
		t.Fatalf("attach through a panicking batch: %v, want ErrPanic", err)
	}
	if err := e.c.attaches.settle(ctx, v.ID); err != nil {
		t.Fatalf("the panicked request is still open: %v", err)
	}
	disk, err := e.c.AttachVolume(ctx, v.ID, node.UUID)
	if err != nil || disk == "" {
		t.Fatalf("attach after the panic: %q, %v", disk, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d batched calls, want 2 (the panicked one and the retry)", n)
	}
}

// TestPanicInWatchRestartsIt: handling an update panics (here: noting
// another controller's create of this cluster); the watch starts over,
// the client stays healthy and sees the other controller's volume.
func TestPanicInWatchRestartsIt(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	other := connectEnv(t, e.sim, nil) // the same cluster's other replica
	var panicked atomic.Int32
	e.c.tasks.mu.Lock()
	note := e.c.tasks.onOtherCreate
	e.c.tasks.onOtherCreate = func(key string) {
		if panicked.Add(1) == 1 {
			panic("injected into the inventory watch")
		}
		note(key)
	}
	e.c.tasks.mu.Unlock()
	gen := e.c.tasks.generation()

	v, err := other.c.CreateVolume(ctx, CreateSpec{Name: "pvc-panic-watch", CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, other.c, "")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for panicked.Load() == 0 || e.c.tasks.generation() == gen {
		if time.Now().After(deadline) {
			t.Fatalf("watch: %d panics, generation %d (was %d); want a panic and a restart", panicked.Load(), e.c.tasks.generation(), gen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for e.c.Healthy(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("client not healthy after the watch restarted: %v", e.c.Healthy(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := e.c.FindVolumeByName(ctx, "pvc-panic-watch")
	if err != nil || got.ID != v.ID {
		t.Fatalf("after the restart, the other replica's volume: %+v, %v; want %s", got, err, v.ID)
	}
	w, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-after-panic", CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, e.c, "")})
	if err != nil || w.ID == "" {
		t.Fatalf("create after the restart: %+v, %v", w, err)
	}
}
