package vcenter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

const (
	// After an answer with changes the watch waits a little before the next
	// poll so that a burst of changes comes back in one answer: briefly while
	// tasks are waited on or when vCenter had been quiet (the answer came
	// after a long wait: a lone change, such as a task of someone else's
	// starting or ending on a shared vCenter, and the watch is soon up to
	// date again, names.go), longer when changes follow each other (a busy
	// shared vCenter must not turn the watch into a stream of calls). A new
	// waiter cuts the longer pause short.
	busyCoalesce = 25 * time.Millisecond
	idleCoalesce = 2 * time.Second

	// A failed watch starts again soon: while it is down, task waiters
	// read their tasks themselves every few seconds (tasks.go).
	watchBackoffMin = 500 * time.Millisecond
	watchBackoffMax = 5 * time.Second
	cleanupTimeout  = 5 * time.Second
)

// watch runs the one property-collector long poll until ctx ends. It
// restarts the poll (new collector, views and filter, full resync) whenever
// it fails, with a backoff when it fails repeatedly.
func (c *client) watch(ctx context.Context) {
	defer close(c.watchDone)
	backoff := watchBackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		var answered bool
		err := panics.Call("vCenter inventory watch", func() (err error) {
			answered, err = c.watchOnce(ctx)
			return err
		})
		if ctx.Err() != nil {
			return
		}
		if answered && isCollectorGone(err) {
			// The session was replaced (re-login): the collector that was
			// working went with it. Start over at once.
			klog.V(2).InfoS("Property collector gone, restarting the watch", "err", err)
			backoff = watchBackoffMin
			continue
		}
		if time.Since(start) > watchBackoffMax {
			backoff = watchBackoffMin
		}
		c.setHealth(fmt.Errorf("vCenter inventory watch: %w", mapFault(err, nil)))
		klog.ErrorS(err, "vCenter inventory watch failed, restarting", "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(backoff)):
		}
		backoff = min(backoff*2, watchBackoffMax)
	}
}

func isCollectorGone(err error) bool {
	if err == nil || !soap.IsSoapFault(err) {
		return false
	}
	_, ok := soap.ToSoapFault(err).VimFault().(types.ManagedObjectNotFound)
	return ok
}

// watchOnce sets up a collector with filters over the inventory views and
// TaskManager.recentTask and long-polls it until an error. answered says
// whether any poll was answered.
func (c *client) watchOnce(ctx context.Context) (answered bool, err error) {
	vim := c.conn.vim
	pc, err := property.DefaultCollector(vim).Create(ctx)
	if err != nil {
		return false, fmt.Errorf("create property collector: %w", err)
	}
	var views []interface{ Destroy(context.Context) error }
	defer func() {
		if ctx.Err() != nil || isCollectorGone(err) || isNotAuthenticated(err) {
			return // logout or the lost session destroys them
		}
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, v := range views {
			_ = v.Destroy(cctx)
		}
		_ = pc.Destroy(cctx)
	}()

	vm := view.NewManager(vim)
	var objs []types.ObjectSpec
	kinds := []string{"VirtualMachine", "Datastore", "HostSystem"}
	if c.nodes != nil {
		kinds = kinds[1:] // the VMs: the nodes' list view below
	}
	for _, root := range c.roots {
		v, err := vm.CreateContainerView(ctx, root, kinds, true)
		if err != nil {
			return false, fmt.Errorf("create container view on %s: %w", root.Value, err)
		}
		views = append(views, v)
		objs = append(objs, types.ObjectSpec{
			Obj:       v.Reference(),
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ContainerView", Path: "view"}},
		})
	}
	if c.nodes != nil {
		lv, err := c.nodes.makeView(func(holds []types.ManagedObjectReference) (*view.ListView, error) {
			return vm.CreateListView(ctx, holds)
		})
		if err != nil {
			return false, fmt.Errorf("create the node VMs' list view: %w", err)
		}
		defer c.nodes.dropView()
		views = append(views, lv)
		objs = append(objs, types.ObjectSpec{
			Obj:       lv.Reference(),
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "ListView", Path: "view"}},
		})
	}
	// Two filters on the one collector, one long poll: the inventory, and
	// the recent tasks. (Apart, a change of recentTask does not make the
	// simulator re-send the whole inventory.)
	filters := []types.PropertyFilterSpec{{
		ObjectSet: objs,
		PropSet: []types.PropertySpec{
			{Type: "VirtualMachine", PathSet: vmProps},
			{Type: "Datastore", PathSet: dsProps},
			{Type: "HostSystem", PathSet: hostProps},
		},
	}, {
		ObjectSet: []types.ObjectSpec{{
			Obj:       *vim.ServiceContent.TaskManager,
			Skip:      types.NewBool(true),
			SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{Type: "TaskManager", Path: "recentTask"}},
		}},
		PropSet: []types.PropertySpec{{Type: "Task", PathSet: taskProps}},
	}}
	for _, spec := range filters {
		if _, err := pc.CreateFilter(ctx, types.CreateFilter{Spec: spec, PartialUpdates: true}); err != nil {
			return false, fmt.Errorf("create property filter: %w", err)
		}
	}
	return c.poll(ctx, pc)
}

// poll is the long-poll loop. The first answers (until one is not
// truncated) fill a fresh inventory that then replaces the cached one.
func (c *client) poll(ctx context.Context, pc *property.Collector) (answered bool, err error) {
	maxWait := c.opts.maxWaitSeconds()
	c.tasks.newGeneration() // tasks may have come and gone unseen
	inv := newInventory()
	initial := true
	seenTasks := map[string]bool{}
	version := ""
	for {
		req := types.WaitForUpdatesEx{
			This:    pc.Reference(),
			Version: version,
			Options: &types.WaitOptions{MaxWaitSeconds: &maxWait},
		}
		polled := time.Now()
		c.pollingSince.Store(polled.UnixNano())
		res, err := methods.WaitForUpdatesEx(ctx, c.conn.vim, &req)
		c.pollingSince.Store(0)
		quiet := time.Since(polled) >= idleCoalesce
		if err != nil {
			if ctx.Err() != nil {
				// Closing: end the poll on the server side too.
				cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
				_ = pc.CancelWaitForUpdates(cctx)
				cancel()
			}
			return answered, err
		}
		answered = true
		c.setHealth(nil)
		c.tasks.prune(time.Now())
		set := res.Returnval
		if set == nil {
			continue // MaxWaitSeconds passed with no change: the keep-alive
		}
		version = set.Version
		if klog.V(6).Enabled() {
			for _, fs := range set.FilterSet {
				for _, u := range fs.ObjectSet {
					var names []string
					for _, ch := range u.ChangeSet {
						names = append(names, ch.Name+"="+fmt.Sprint(ch.Val))
					}
					klog.InfoS("watch update", "obj", u.Obj.Value, "kind", u.Kind, "changes", names)
				}
			}
		}
		truncated := set.Truncated != nil && *set.Truncated
		dirty := c.applyUpdates(inv, set)
		n := 0
		for _, fs := range set.FilterSet {
			n += len(fs.ObjectSet)
		}
		c.tasks.obs.WatchUpdates(n)
		if initial {
			for _, fs := range set.FilterSet {
				for _, u := range fs.ObjectSet {
					if u.Obj.Type == "Task" {
						seenTasks[u.Obj.Value] = true
					}
				}
			}
		}
		if initial && !truncated {
			initial = false
			c.inv.Store(inv)
			c.markSynced()
			klog.V(2).InfoS("vCenter inventory synced", "version", version)
			// Tasks waited for that a fresh reading of recentTask does not
			// list may be lost (vCenter restarted while the watch was down).
			if err := c.checkMissing(ctx, seenTasks); err != nil {
				return true, err
			}
		}
		if len(dirty) > 0 {
			if err := c.refetch(ctx, inv, dirty); err != nil {
				return true, err
			}
		}
		if !truncated && len(set.FilterSet) > 0 {
			if err := c.coalesce(ctx, quiet); err != nil {
				return true, err
			}
		}
	}
}

// coalesce pauses between an answer with changes and the next poll;
// quiet: the answer came after vCenter had been quiet for idleCoalesce.
func (c *client) coalesce(ctx context.Context, quiet bool) error {
	if quiet || c.tasks.inFlight() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(busyCoalesce):
		}
		return nil
	}
	select {
	case <-c.tasks.wake: // drain a stale wake-up first
	default:
	}
	t := time.NewTimer(idleCoalesce)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-c.tasks.wake:
		select { // a task was just started: let its first changes gather
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(busyCoalesce):
		}
	}
	return nil
}

// applyUpdates applies an update set: inventory objects first, then tasks,
// so that a waiter woken by a finished task sees the changes the task made.
// It returns the objects that need a full re-read.
func (c *client) applyUpdates(inv *inventory, set *types.UpdateSet) []types.ManagedObjectReference {
	var dirty []types.ManagedObjectReference
	var tasks []types.ObjectUpdate
	for _, fs := range set.FilterSet {
		for _, u := range fs.ObjectSet {
			if u.Obj.Type == "Task" {
				tasks = append(tasks, u)
				continue
			}
			if !inv.apply(u) {
				dirty = append(dirty, u.Obj)
			}
		}
	}
	for _, u := range tasks {
		c.tasks.apply(u)
	}
	return dirty
}

// refetch re-reads the watched properties of objects whose changes came in
// a form the inventory does not apply piecemeal.
func (c *client) refetch(ctx context.Context, inv *inventory, objs []types.ManagedObjectReference) error {
	klog.V(4).InfoS("Re-reading inventory objects", "count", len(objs))
	spec := types.PropertyFilterSpec{
		PropSet: []types.PropertySpec{
			{Type: "VirtualMachine", PathSet: vmProps},
			{Type: "Datastore", PathSet: dsProps},
			{Type: "HostSystem", PathSet: hostProps},
		},
	}
	for _, o := range objs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: o})
	}
	res, err := property.DefaultCollector(c.conn.vim).RetrieveProperties(ctx, types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{spec}})
	if err != nil {
		if isCollectorGone(err) {
			return nil // the object went away; the watch reports its leave
		}
		return err
	}
	for _, oc := range res.Returnval {
		u := types.ObjectUpdate{Kind: types.ObjectUpdateKindModify, Obj: oc.Obj}
		for _, p := range oc.PropSet {
			u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: p.Name, Op: types.PropertyChangeOpAssign, Val: p.Val})
		}
		inv.apply(u)
	}
	return nil
}

// resolveRoots turns the configured datacenter names into the roots of the
// container views; the root folder when none are configured.
func (c *client) resolveRoots(ctx context.Context) error {
	vim := c.conn.vim
	if len(c.opts.Datacenters) == 0 {
		c.roots = []types.ManagedObjectReference{vim.ServiceContent.RootFolder}
		return nil
	}
	v, err := view.NewManager(vim).CreateContainerView(ctx, vim.ServiceContent.RootFolder, []string{"Datacenter"}, true)
	if err != nil {
		return mapFault(err, nil)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var dcs []mo.Datacenter
	if err := v.Retrieve(ctx, []string{"Datacenter"}, []string{"name"}, &dcs); err != nil {
		return mapFault(err, nil)
	}
	byName := map[string]types.ManagedObjectReference{}
	var names []string
	for _, dc := range dcs {
		byName[dc.Name] = dc.Self
		names = append(names, dc.Name)
	}
	for _, want := range c.opts.Datacenters {
		name := want
		if i := lastSlash(want); i >= 0 {
			name = want[i+1:] // an inventory path: its last element
		}
		ref, ok := byName[name]
		if !ok {
			return fmt.Errorf("%w: datacenter %q not found (vCenter has %v)", ErrInvalidArgument, want, names)
		}
		c.roots = append(c.roots, ref)
	}
	return nil
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

var errClosed = errors.New("vcenter: client closed")

// jitter spreads d by ±25 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2)) //nolint:gosec // jitter
}
