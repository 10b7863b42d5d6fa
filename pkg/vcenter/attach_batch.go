package vcenter

import (
	"context"
	"fmt"
	"sync"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

// Attaches to one node VM are batched: vCenter reconfigures a VM one task
// at a time anyway, so while one CnsAttachVolume for a VM runs, the
// attaches that arrive for that VM wait and then go together in the next
// CnsAttachVolume (one spec each, one result each). A burst of pods on a
// node costs a few CNS tasks instead of one per volume, and nobody waits
// longer than for the call in flight. No timer: a lone attach goes at once.

// attachBatchTimeout bounds one batched CnsAttachVolume. It does not come
// from any one caller's context: the batch serves several callers.
const attachBatchTimeout = 5 * time.Minute

type attachBatches struct {
	mu     sync.Mutex
	byNode map[types.ManagedObjectReference]*attachQueue
	// open holds the requests not yet answered, by volume, so that a
	// detach can wait for an attach that may still complete (settle).
	open map[string][]*attachRequest
}

type attachQueue struct {
	pending []*attachRequest
	running bool
}

type attachRequest struct {
	volumeID string
	done     chan attachOutcome // buffered: the batch never blocks on a caller gone
	answered chan struct{}      // closed once the batch has given its outcome
}

type attachOutcome struct {
	diskUUID string
	err      error
}

// attachBatched attaches the volume to the VM through the VM's queue and
// waits for its own outcome (or for ctx).
func (c *client) attachBatched(ctx context.Context, vm types.ManagedObjectReference, volumeID string) (string, error) {
	req := &attachRequest{volumeID: volumeID, done: make(chan attachOutcome, 1), answered: make(chan struct{})}
	b := &c.attaches
	b.mu.Lock()
	if b.byNode == nil {
		b.byNode = map[types.ManagedObjectReference]*attachQueue{}
	}
	if b.open == nil {
		b.open = map[string][]*attachRequest{}
	}
	b.open[volumeID] = append(b.open[volumeID], req)
	q := b.byNode[vm]
	if q == nil {
		q = &attachQueue{}
		b.byNode[vm] = q
	}
	q.pending = append(q.pending, req)
	start := !q.running
	q.running = true
	b.mu.Unlock()
	if start {
		go c.drainAttaches(vm, q)
	}
	select {
	case out := <-req.done:
		return out.diskUUID, out.err
	case <-ctx.Done():
		// The attach goes on; the caller's retry finds it done.
		return "", ctx.Err()
	}
}

// drainAttaches sends the queue's pending attaches, all of them in one
// CnsAttachVolume, until none are left.
func (c *client) drainAttaches(vm types.ManagedObjectReference, q *attachQueue) {
	b := &c.attaches
	for {
		b.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.running = false
			delete(b.byNode, vm)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		c.attachBatch(vm, batch)
	}
}

// attachBatch runs one CnsAttachVolume for the requests (a volume asked
// for twice goes once) and hands each its result.
func (c *client) attachBatch(vm types.ManagedObjectReference, batch []*attachRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), attachBatchTimeout)
	defer cancel()
	var specs []cnstypes.CnsVolumeAttachDetachSpec
	seen := map[string]bool{}
	for _, r := range batch {
		if !seen[r.volumeID] {
			seen[r.volumeID] = true
			specs = append(specs, cnstypes.CnsVolumeAttachDetachSpec{VolumeId: cnstypes.CnsVolumeId{Id: r.volumeID}, Vm: vm})
		}
	}
	if len(specs) > 1 {
		klog.V(2).InfoS("Attaching volumes in one CNS call", "vm", vm.Value, "volumes", len(specs))
	}
	results, err := c.runCNSBatch(ctx, "attach", ErrVolumeNotFound, func() (*object.Task, error) {
		return c.conn.cns.AttachVolume(ctx, specs)
	})
	byVolume := map[string]cnstypes.BaseCnsVolumeOperationResult{}
	for _, r := range results {
		byVolume[r.GetCnsVolumeOperationResult().VolumeId.Id] = r
	}
	for _, req := range batch {
		out := attachOutcome{err: err}
		if err == nil {
			r, ok := byVolume[req.volumeID]
			switch {
			case !ok && len(results) == 1 && len(specs) == 1:
				r, ok = results[0], true // a result that does not name its volume
			case !ok:
				out.err = fmt.Errorf("CNS attach task returned no result for volume %s", req.volumeID)
			}
			if ok {
				if f := r.GetCnsVolumeOperationResult().Fault; f != nil {
					out.err = mapFault(localizedError(f), ErrVolumeNotFound)
				} else if ar, isAttach := r.(*cnstypes.CnsVolumeAttachResult); isAttach {
					out.diskUUID = ar.DiskUUID
				}
			}
		}
		req.done <- out
		c.attaches.answered(req)
	}
}

// answered takes a request off the open ones.
func (b *attachBatches) answered(req *attachRequest) {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := b.open[req.volumeID]
	for i, r := range list {
		if r == req {
			b.open[req.volumeID] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(b.open[req.volumeID]) == 0 {
		delete(b.open, req.volumeID)
	}
	close(req.answered)
}

// settle waits until no attach of the volume is queued or running.
func (b *attachBatches) settle(ctx context.Context, volumeID string) error {
	b.mu.Lock()
	pending := append([]*attachRequest(nil), b.open[volumeID]...)
	b.mu.Unlock()
	for _, r := range pending {
		select {
		case <-r.answered:
		case <-ctx.Done():
			return fmt.Errorf("waiting for an attach of volume %s to end: %w", volumeID, ctx.Err())
		}
	}
	return nil
}
