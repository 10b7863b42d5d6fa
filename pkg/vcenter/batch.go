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

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

// Attaches to one node VM are batched, and so are detaches: vCenter
// reconfigures a VM one task at a time anyway, so while one CnsAttachVolume
// (CnsDetachVolume) for a VM runs, the attaches (detaches) that arrive for
// that VM wait and then go together in the next call, one spec and one
// result each. A burst of pods on a node, or a node's drain, costs a few
// CNS tasks instead of one per volume, and nobody waits longer than for
// the call in flight. A call for an idle VM waits gatherWindow first, so
// that requests that arrive together (a pod's volumes, the volumes a
// drain's detach batch just freed) go together rather than the first
// alone and the rest in a second task: measured in a drain of 10 volumes
// under realistic latency, 4 reconfigurations of 7.6 s became 3.

// gatherWindow is how long a call for an idle VM waits for others: tiny
// beside a reconfiguration (an attach takes seconds).
const gatherWindow = 50 * time.Millisecond

// batchTimeout bounds one batched call. It does not come from any one
// caller's context: the batch serves several callers.
const batchTimeout = 5 * time.Minute

// vmBatches is the batching of one kind of per-VM CNS call.
type vmBatches struct {
	op     string        // opid.Attach or opid.Detach
	gather time.Duration // gatherWindow; tests may change it
	call   func(ctx context.Context, specs []cnstypes.CnsVolumeAttachDetachSpec) (*object.Task, error)

	mu     sync.Mutex
	byNode map[types.ManagedObjectReference]*vmQueue
	// open holds the requests not yet answered, by volume, so that a
	// detach can wait for an attach that may still complete (settle).
	open map[string][]*batchRequest
}

type vmQueue struct {
	pending []*batchRequest
	running bool
}

type batchRequest struct {
	volumeID string
	done     chan batchOutcome // buffered: the batch never blocks on a caller gone
	answered chan struct{}     // closed once the batch has given its outcome
}

type batchOutcome struct {
	result cnstypes.BaseCnsVolumeOperationResult
	err    error
}

// do runs the volume's call for the VM through the VM's queue and waits
// for its own outcome (or for ctx: the call goes on, and the caller's
// retry finds it done).
func (c *client) batched(ctx context.Context, b *vmBatches, vm types.ManagedObjectReference, volumeID string) (cnstypes.BaseCnsVolumeOperationResult, error) {
	req := &batchRequest{volumeID: volumeID, done: make(chan batchOutcome, 1), answered: make(chan struct{})}
	b.mu.Lock()
	if b.byNode == nil {
		b.byNode = map[types.ManagedObjectReference]*vmQueue{}
	}
	if b.open == nil {
		b.open = map[string][]*batchRequest{}
	}
	b.open[volumeID] = append(b.open[volumeID], req)
	q := b.byNode[vm]
	if q == nil {
		q = &vmQueue{}
		b.byNode[vm] = q
	}
	q.pending = append(q.pending, req)
	start := !q.running
	q.running = true
	b.mu.Unlock()
	if start {
		go c.drain(b, vm, q, b.gather)
	}
	select {
	case out := <-req.done:
		return out.result, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drain sends the queue's pending requests, all of them in one call, until
// none are left; the first call after gather.
func (c *client) drain(b *vmBatches, vm types.ManagedObjectReference, q *vmQueue, gather time.Duration) {
	if gather > 0 {
		time.Sleep(gather)
	}
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
		// A panic (a bug) answers the requests it left unanswered with
		// it; the queue goes on and the process lives.
		if err := panics.Call("CNS "+b.op+" batch for VM "+vm.Value, func() error {
			c.runBatch(b, vm, batch)
			return nil
		}); err != nil {
			for _, req := range batch {
				select {
				case <-req.answered:
				default:
					req.done <- batchOutcome{err: err}
					b.answered(req)
				}
			}
		}
	}
}

// runBatch makes one call for the requests (a volume asked for twice goes
// once) and hands each its result.
func (c *client) runBatch(b *vmBatches, vm types.ManagedObjectReference, batch []*batchRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
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
		klog.V(2).InfoS("Several volumes in one CNS call", "operation", b.op, "vm", vm.Value, "volumes", len(specs))
	}
	results, err := c.runCNSBatch(ctx, b.op, vm.Value, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) { return b.call(ctx, specs) })
	byVolume := map[string]cnstypes.BaseCnsVolumeOperationResult{}
	for _, r := range results {
		byVolume[r.GetCnsVolumeOperationResult().VolumeId.Id] = r
	}
	for _, req := range batch {
		out := batchOutcome{err: err}
		if err == nil {
			r, ok := byVolume[req.volumeID]
			switch {
			case !ok && len(results) == 1 && len(specs) == 1:
				r, ok = results[0], true // a result that does not name its volume
			case !ok:
				out.err = fmt.Errorf("CNS %s task returned no result for volume %s", b.op, req.volumeID)
			}
			if ok {
				out.result = r
				if f := r.GetCnsVolumeOperationResult().Fault; f != nil {
					out.err = mapFault(localizedError(f), ErrVolumeNotFound)
				}
			}
		}
		req.done <- out
		b.answered(req)
	}
}

// answered takes a request off the open ones.
func (b *vmBatches) answered(req *batchRequest) {
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

// settle waits until no call of the volume is queued or running.
func (b *vmBatches) settle(ctx context.Context, volumeID string) error {
	b.mu.Lock()
	pending := append([]*batchRequest(nil), b.open[volumeID]...)
	b.mu.Unlock()
	for _, r := range pending {
		select {
		case <-r.answered:
		case <-ctx.Done():
			return fmt.Errorf("waiting for an %s of volume %s to end: %w", b.op, volumeID, ctx.Err())
		}
	}
	return nil
}
