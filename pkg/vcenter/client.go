package vcenter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// client implements Client with govmomi.
type client struct {
	opts  Options
	conn  *conn
	roots []types.ManagedObjectReference // container-view roots

	inv      atomic.Pointer[inventory]
	topo     atomic.Pointer[topology] // topology.go; nil without categories
	tasks    *taskWaiter
	pol      *policyCache
	attaches vmBatches
	detaches vmBatches
	files    fileSupport
	nodes    *nodeScope // nil: every VM is a node (nodes.go)
	lookups  nameLookups
	names    nameIndex // names.go
	// pollingSince is when the watch's long poll now waiting began (unix
	// nanoseconds), 0 while none waits.
	pollingSince atomic.Int64

	healthMu sync.Mutex
	health   error

	syncOnce  sync.Once
	synced    chan struct{}
	cancel    context.CancelFunc
	watchDone chan struct{}
	closeOnce sync.Once
}

var _ Client = (*client)(nil)

// New connects to vCenter, logs in, starts the inventory watch and returns
// once the caches are warm (or ctx ends).
func New(ctx context.Context, opts Options) (Client, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	obs := opts.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	conn, err := dial(ctx, opts, obs)
	if err != nil {
		return nil, err
	}
	c := &client{
		opts:      opts,
		conn:      conn,
		tasks:     newTaskWaiter(obs),
		synced:    make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	c.pol = newPolicyCache(c)
	c.tasks.cluster = opid.Tag(opts.ClusterID)
	c.tasks.onOtherCreate = c.noteOtherCreate
	c.attaches = vmBatches{op: opid.Attach, call: conn.cns.AttachVolume, gather: gatherWindow}
	c.detaches = vmBatches{op: opid.Detach, call: conn.cns.DetachVolume, gather: gatherWindow}
	c.inv.Store(newInventory())
	if err := c.resolveRoots(ctx); err != nil {
		conn.logout(ctx)
		return nil, err
	}
	if opts.Nodes != nil {
		// The nodes first, so that the first picture holds them.
		c.nodes = newNodeScope(opts.Nodes)
		uuids, _ := opts.Nodes.Nodes()
		if err := c.applyNodes(ctx, uuids); err != nil {
			conn.logout(ctx)
			return nil, err
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.watch(wctx)

	if err := c.waitSynced(ctx); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	if c.nodes != nil {
		go c.syncNodes(wctx)
	}
	if c.topologyOn() {
		if err := c.startTopology(ctx, wctx); err != nil {
			_ = c.Close(context.Background())
			return nil, err
		}
	}
	nodes := "every VM of the datacenters"
	if c.nodes != nil {
		nodes = fmt.Sprintf("%d VMs of this cluster's nodes", len(c.nodes.nodeRefs()))
	}
	klog.InfoS("Connected to vCenter", "host", opts.Host, "user", opts.User, "clusterID", opts.ClusterID,
		"datacenters", opts.Datacenters, "nodes", nodes)
	return c, nil
}

// waitSynced waits for the watch's first full picture; the watch's first
// failure ends the wait.
func (c *client) waitSynced(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.synced:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("vcenter: waiting for the inventory: %w", ctx.Err())
		case <-tick.C:
			if err := c.Healthy(ctx); err != nil {
				return fmt.Errorf("vcenter: reading the inventory: %w", err)
			}
		}
	}
}

func (c *client) markSynced() {
	c.syncOnce.Do(func() { close(c.synced) })
}

func (c *client) setHealth(err error) {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	c.health = err
}

// Healthy answers from state: the last watch round trip's outcome.
func (c *client) About() Release {
	a := c.conn.vim.ServiceContent.About
	return Release{Version: a.Version, Build: a.Build, FullName: a.FullName}
}

func (c *client) Healthy(context.Context) error {
	c.healthMu.Lock()
	defer c.healthMu.Unlock()
	return c.health
}

// Close stops the watch and logs out.
func (c *client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.cancel()
		select {
		case <-c.watchDone:
		case <-ctx.Done():
		}
		c.setHealth(errClosed)
		c.conn.logout(ctx)
		klog.V(2).InfoS("Logged out of vCenter", "host", c.opts.Host)
	})
	return nil
}

// SetCredentials takes new credentials: the session in use goes on; the
// next login (NotAuthenticated, a restarted vCenter) uses them.
func (c *client) SetCredentials(user, password string) { c.conn.setCredentials(user, password) }

// NodeVM finds a node VM by BIOS UUID in the cache (lookupNode).
func (c *client) NodeVM(ctx context.Context, nodeUUID string) (NodeVM, error) {
	vm, ref, ok, err := c.lookupNode(ctx, nodeUUID)
	if err != nil {
		return NodeVM{}, err
	}
	if !ok {
		return NodeVM{}, fmt.Errorf("%w: no VM with BIOS UUID %q", ErrNodeNotFound, nodeUUID)
	}
	vm.Topology = c.nodeTopology(ref)
	return vm, nil
}
