package vcenter

import (
	"context"
	"fmt"
	"sync"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

// Look-ups by name are coalesced: every CreateVolume looks its name up
// before it creates (exactly once), and a burst of claims (a StatefulSet
// scaled up, a namespace restored) would otherwise send one CnsQueryVolume
// per claim at the same moment. A look-up waits lookupGather for others
// arriving with it, and all of them go in one query (Names: all of them),
// each caller getting its own name's volumes. Every look-up's query
// starts after the look-up was asked for, so what it finds is as fresh as
// a query of its own.

// lookupGather is how long a look-up waits for others: a burst's requests
// arrive within it, and it is tiny beside a query (tens of milliseconds
// or more) and a create task.
const lookupGather = 2 * time.Millisecond

// lookupBatch bounds the names of one query.
const lookupBatch = 100

type nameLookups struct {
	mu        sync.Mutex
	pending   []*nameLookup
	gathering bool
}

type nameLookup struct {
	name string
	done chan struct{}
	vols []cnstypes.CnsVolume
	err  error
}

// lookupNames returns this cluster's volumes named name, through a query
// shared with the look-ups that arrive together.
func (c *client) lookupName(ctx context.Context, name string) ([]cnstypes.CnsVolume, error) {
	l := &nameLookup{name: name, done: make(chan struct{})}
	c.lookups.mu.Lock()
	c.lookups.pending = append(c.lookups.pending, l)
	start := !c.lookups.gathering
	c.lookups.gathering = true
	c.lookups.mu.Unlock()
	if start {
		go c.runLookups()
	}
	select {
	case <-l.done:
		return l.vols, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// runLookups gathers, then answers what is pending, lookupBatch names a
// query.
func (c *client) runLookups() {
	time.Sleep(lookupGather)
	c.lookups.mu.Lock()
	batch := c.lookups.pending
	c.lookups.pending, c.lookups.gathering = nil, false
	c.lookups.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), lookupBatch)
		part := batch[:n]
		// A panic (a bug) answers the look-ups it left unanswered with it.
		if err := panics.Call("volume name look-up", func() error { c.lookupBatch(part); return nil }); err != nil {
			for _, l := range part {
				select {
				case <-l.done:
				default:
					l.err = err
					close(l.done)
				}
			}
		}
		batch = batch[n:]
	}
}

// lookupBatch makes one query (paged if the answer is) for the names of
// batch and hands each look-up its volumes. When the cluster's names are
// known (names.go) but the watch is not up to date, reading vCenter's
// running and recent tasks (one property read, a fraction of a CNS query)
// brings the index up to date: the names it knows to be free are answered
// from it, and only the others are queried.
func (c *client) lookupBatch(batch []*nameLookup) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	if c.indexUsable() {
		if err := c.readRecentTasks(ctx); err == nil {
			rest := batch[:0:0]
			for _, l := range batch {
				if c.absentInIndex(l.name) {
					close(l.done)
					continue
				}
				rest = append(rest, l)
			}
			if batch = rest; len(batch) == 0 {
				return
			}
		}
	}
	seen := map[string]bool{}
	var names []string
	for _, l := range batch {
		if !seen[l.name] {
			seen[l.name] = true
			names = append(names, l.name)
		}
	}
	byName := map[string][]cnstypes.CnsVolume{}
	f := cnstypes.CnsQueryFilter{Names: names, ContainerClusterIds: []string{c.opts.ClusterID}}
	var err error
	for offset := int64(0); ; {
		f.Cursor = &cnstypes.CnsCursor{Offset: offset, Limit: listAllPage}
		var res *cnstypes.CnsQueryResult
		if res, err = c.query(ctx, f); err != nil {
			break
		}
		vols, next := cnsPage(res, offset, listAllPage)
		for _, v := range vols {
			byName[v.Name] = append(byName[v.Name], v)
		}
		if next == 0 {
			break
		}
		offset = next
	}
	if err != nil && len(batch) > 1 {
		err = fmt.Errorf("%w (a look-up of %d names together)", err, len(names))
	}
	for _, l := range batch {
		l.vols, l.err = byName[l.name], err
		close(l.done)
	}
}
