package vcenter

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

// The cluster's nodes. A vCenter is shared: besides this cluster's node
// VMs it holds other workloads, templates and other clusters' nodes, on
// hosts that do not all mount the same datastores. With Options.Nodes the
// client knows which VMs are this cluster's nodes (by BIOS UUID, the CSI
// node ID; the controller learns them from the CSINode objects of this
// driver, or from --node-uuids), and only those count: a datastore is
// reachable when every node's host mounts it, topology segments are those
// of the nodes' hosts, and the inventory watch follows the nodes (a list
// view of them) instead of every VM of the datacenters, so that what the
// watch costs follows the cluster, not the vCenter.
//
// A node's UUID is resolved to its VM once (SearchIndex.FindByUuid, one
// call) when it joins. A VM that an attach or a detach names but that is
// not a node (a node Kubernetes has already forgotten whose disks must
// still be detached, or one whose CSINode has not arrived yet) is looked
// up the same way and followed too ("adopted"), without counting for
// reachability.
//
// Without Options.Nodes every non-template VM of the datacenters is a
// node: right only for a vCenter that holds nothing but this cluster.

// NodeSource tells which VMs are this cluster's Kubernetes nodes.
type NodeSource interface {
	// Nodes returns the BIOS UUIDs of the node VMs now and a channel that
	// is closed when they change.
	Nodes() (uuids []string, changed <-chan struct{})
}

// NodeSet is a NodeSource whose owner sets the nodes.
type NodeSet struct {
	mu      sync.Mutex
	uuids   []string
	changed chan struct{}
}

// NewNodeSet makes a NodeSet of these BIOS UUIDs; StaticNodes for a set
// that never changes (--node-uuids).
func NewNodeSet(uuids ...string) *NodeSet {
	s := &NodeSet{changed: make(chan struct{})}
	s.uuids = normalizeUUIDs(uuids)
	return s
}

// StaticNodes is a NodeSource of a fixed set of BIOS UUIDs.
func StaticNodes(uuids ...string) NodeSource { return NewNodeSet(uuids...) }

// Nodes implements NodeSource.
func (s *NodeSet) Nodes() ([]string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.uuids), s.changed
}

// Set replaces the nodes.
func (s *NodeSet) Set(uuids []string) {
	n := normalizeUUIDs(uuids)
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(n, s.uuids) {
		return
	}
	s.uuids = n
	close(s.changed)
	s.changed = make(chan struct{})
}

// normalizeUUIDs normalizes, sorts and dedups BIOS UUIDs; unreadable ones
// are dropped (with a log line: a node ID that is no BIOS UUID).
func normalizeUUIDs(in []string) []string {
	out := make([]string, 0, len(in))
	for _, u := range in {
		n := normalizeVMUUID(u)
		if n == "" {
			klog.InfoS("A node ID is not a BIOS UUID; it names no node VM", "nodeID", u)
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// nodeScope is what the client knows of the cluster's nodes.
type nodeScope struct {
	src NodeSource

	mu      sync.Mutex
	refs    map[string]types.ManagedObjectReference // node UUID → its VM
	missing map[string]bool                         // node UUIDs vCenter has no VM for
	adopted map[types.ManagedObjectReference]bool   // followed, not nodes

	// viewMu serializes changes of the watch's list view; view is nil
	// while the watch has none. inView is what the view holds.
	viewMu sync.Mutex
	view   *view.ListView
	inView map[types.ManagedObjectReference]bool
}

func newNodeScope(src NodeSource) *nodeScope {
	return &nodeScope{
		src:     src,
		refs:    map[string]types.ManagedObjectReference{},
		missing: map[string]bool{},
		adopted: map[types.ManagedObjectReference]bool{},
	}
}

// nodeRefs is the set of the node VMs (not the adopted ones).
func (ns *nodeScope) nodeRefs() map[types.ManagedObjectReference]bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	out := make(map[types.ManagedObjectReference]bool, len(ns.refs))
	for _, r := range ns.refs {
		out[r] = true
	}
	return out
}

// watched lists the VMs the watch follows: the nodes and the adopted.
func (ns *nodeScope) watched() []types.ManagedObjectReference {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	set := map[types.ManagedObjectReference]bool{}
	for _, r := range ns.refs {
		set[r] = true
	}
	for r := range ns.adopted {
		set[r] = true
	}
	out := make([]types.ManagedObjectReference, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out
}

// nodeResolveParallel bounds the FindByUuid calls in flight when many
// nodes join at once (the controller's start in a large cluster).
const nodeResolveParallel = 8

// applyNodes takes the source's current nodes: new ones are resolved to
// their VMs, gone ones dropped, and the watch's list view follows.
func (c *client) applyNodes(ctx context.Context, uuids []string) error {
	ns := c.nodes
	want := map[string]bool{}
	for _, u := range uuids {
		want[u] = true
	}
	ns.mu.Lock()
	var add []string
	for u := range want {
		if _, ok := ns.refs[u]; !ok {
			add = append(add, u)
		}
	}
	for u := range ns.refs {
		if !want[u] {
			klog.InfoS("Node left the cluster", "nodeID", u, "vm", ns.refs[u].Value)
			delete(ns.refs, u)
		}
	}
	for u := range ns.missing {
		if !want[u] {
			delete(ns.missing, u)
		}
	}
	ns.mu.Unlock()
	sort.Strings(add)
	found, err := c.resolveVMs(ctx, add)
	ns.mu.Lock()
	for _, u := range add {
		ref, ok := found[u]
		switch {
		case ok:
			ns.refs[u] = ref
			delete(ns.missing, u)
			delete(ns.adopted, ref)
			klog.InfoS("Node joined the cluster", "nodeID", u, "vm", ref.Value)
		case err == nil && !ns.missing[u]:
			ns.missing[u] = true
			klog.InfoS("A node of the cluster has no VM with its BIOS UUID in vCenter's datacenters; it counts for nothing until it has", "nodeID", u)
		}
	}
	known := len(ns.refs)
	ns.mu.Unlock()
	c.tasks.obs.NodeVMs(known)
	if verr := c.updateNodeView(ctx); verr != nil && err == nil {
		err = verr
	}
	return err
}

// resolveVMs finds the VMs of BIOS UUIDs; a UUID with no VM is left out.
func (c *client) resolveVMs(ctx context.Context, uuids []string) (map[string]types.ManagedObjectReference, error) {
	out := map[string]types.ManagedObjectReference{}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, nodeResolveParallel)
	var wg sync.WaitGroup
	for _, u := range uuids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ref, ok, err := c.findVM(ctx, u)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case ok:
				out[u] = ref
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}

// findVM finds the non-template VM with that BIOS UUID in the configured
// datacenters: one SearchIndex.FindByUuid call per datacenter until found.
func (c *client) findVM(ctx context.Context, uuid string) (types.ManagedObjectReference, bool, error) {
	si := object.NewSearchIndex(c.conn.vim)
	for _, root := range c.roots {
		var dc *object.Datacenter
		if root.Type == "Datacenter" {
			dc = object.NewDatacenter(c.conn.vim, root)
		}
		ref, err := si.FindByUuid(ctx, dc, uuid, true, types.NewBool(false))
		if err != nil {
			return types.ManagedObjectReference{}, false, fmt.Errorf("find the VM with BIOS UUID %s: %w", uuid, mapFault(err, ErrNodeNotFound))
		}
		if ref != nil {
			return ref.Reference(), true, nil
		}
	}
	return types.ManagedObjectReference{}, false, nil
}

// updateNodeView makes the watch's list view hold the watched VMs.
func (c *client) updateNodeView(ctx context.Context) error {
	ns := c.nodes
	ns.viewMu.Lock()
	defer ns.viewMu.Unlock()
	if ns.view == nil {
		return nil // the watch makes its view from watched() when it starts
	}
	want := map[types.ManagedObjectReference]bool{}
	var add, remove []types.ManagedObjectReference
	for _, r := range ns.watched() {
		want[r] = true
		if !ns.inView[r] {
			add = append(add, r)
		}
	}
	for r := range ns.inView {
		if !want[r] {
			remove = append(remove, r)
		}
	}
	if len(add) > 0 {
		if _, err := ns.view.Add(ctx, add); err != nil {
			return fmt.Errorf("add node VMs to the watch: %w", mapFault(err, nil))
		}
		for _, r := range add {
			ns.inView[r] = true
		}
	}
	if len(remove) > 0 {
		if _, err := ns.view.Remove(ctx, remove); err != nil {
			return fmt.Errorf("drop VMs from the watch: %w", mapFault(err, nil))
		}
		for _, r := range remove {
			delete(ns.inView, r)
		}
	}
	return nil
}

// makeView makes the watch's list view of the watched VMs (create), which
// updateNodeView then keeps current; dropView forgets it when the watch
// ends.
func (ns *nodeScope) makeView(create func([]types.ManagedObjectReference) (*view.ListView, error)) (*view.ListView, error) {
	ns.viewMu.Lock()
	defer ns.viewMu.Unlock()
	holds := ns.watched()
	v, err := create(holds)
	if err != nil {
		return nil, err
	}
	ns.view = v
	ns.inView = map[types.ManagedObjectReference]bool{}
	for _, r := range holds {
		ns.inView[r] = true
	}
	return v, nil
}

func (ns *nodeScope) dropView() {
	ns.viewMu.Lock()
	defer ns.viewMu.Unlock()
	ns.view, ns.inView = nil, nil
}

// syncNodes follows the node source until ctx ends.
func (c *client) syncNodes(ctx context.Context) {
	backoff := watchBackoffMin
	for {
		uuids, changed := c.nodes.src.Nodes()
		var retry <-chan time.Time
		if err := c.applyNodes(ctx, uuids); err != nil {
			if ctx.Err() != nil {
				return
			}
			klog.ErrorS(err, "Following the cluster's nodes failed; trying again", "backoff", backoff)
			retry = time.After(jitter(backoff))
			backoff = min(backoff*2, watchBackoffMax)
		} else {
			backoff = watchBackoffMin
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry:
		}
	}
}

// adoptWait bounds how long an adopted VM's first picture may take.
const adoptWait = 10 * time.Second

// lookupNode finds a VM by BIOS UUID: in the inventory, or, when the
// client follows only the nodes, in vCenter, adopting it (see above).
// ok is false when vCenter has no such VM.
func (c *client) lookupNode(ctx context.Context, uuid string) (NodeVM, types.ManagedObjectReference, bool, error) {
	uuid = normalizeVMUUID(uuid)
	if vm, ref, ok := c.inv.Load().nodeVM(uuid); ok || c.nodes == nil {
		return vm, ref, ok, nil
	}
	ref, found, err := c.findVM(ctx, uuid)
	if err != nil || !found {
		return NodeVM{}, ref, false, err
	}
	ns := c.nodes
	ns.mu.Lock()
	isNode := false
	for _, r := range ns.refs {
		isNode = isNode || r == ref
	}
	if !isNode && !ns.adopted[ref] {
		ns.adopted[ref] = true
		klog.InfoS("Following a VM that is not a node of the cluster (yet, or any more): an attach or detach names it", "nodeID", uuid, "vm", ref.Value)
	}
	ns.mu.Unlock()
	if err := c.updateNodeView(ctx); err != nil {
		return NodeVM{}, ref, false, err
	}
	deadline := time.Now().Add(adoptWait)
	for {
		if vm, ref, ok := c.inv.Load().nodeVM(uuid); ok {
			return vm, ref, true, nil
		}
		if time.Now().After(deadline) {
			return NodeVM{}, ref, false, fmt.Errorf("%w: the VM with BIOS UUID %s (%s) did not show in the inventory watch within %v", ErrUnavailable, uuid, ref.Value, adoptWait)
		}
		select {
		case <-ctx.Done():
			return NodeVM{}, ref, false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// noNodesYet stands for the nodes a datastore is not reachable from when
// no node of the cluster is known.
const noNodesYet = "the cluster's nodes (none known yet: no CSINode lists this driver, or no VM has their BIOS UUIDs)"

// nodeFilter says which VMs of the inventory are nodes: the nodes' VMs, or
// every non-template VM without Options.Nodes.
func (c *client) nodeFilter() func(*vmState) bool {
	if c.nodes == nil {
		return notTemplate
	}
	refs := c.nodes.nodeRefs()
	return func(vm *vmState) bool { return refs[vm.ref] && !vm.template }
}

func notTemplate(vm *vmState) bool { return !vm.template }
