package vcenter

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

// Topology (zones and regions) comes from vSphere tags, as upstream does
// it: the admin creates one tag category per topology level
// ([Labels] topology-categories = "k8s-region,k8s-zone") and tags
// datacenters, clusters or hosts. A host's segment is, per category, the
// tag on the host or else on its nearest tagged ancestor (cluster, folders,
// datacenter): the nearest wins. A node VM's segment is its host's.
//
// The tags and the host → ancestor chain are read once at start and then
// every TopologyRefresh in the background (vAPI REST: a session, the
// categories, their tags, the objects on them in one call; SOAP: the
// parents of hosts, clusters, folders and datacenters in one view), never
// per request. Which host a VM runs on and which hosts mount a datastore
// come from the inventory watch.

const defaultTopologyRefresh = 5 * time.Minute

// topology is one reading of the tags.
type topology struct {
	categories []string
	hosts      map[types.ManagedObjectReference]map[string]string // host → category → tag
}

// segment returns a copy of a host's segment (nil when it has none).
func (t *topology) segment(host types.ManagedObjectReference) map[string]string {
	if t == nil {
		return nil
	}
	seg := t.hosts[host]
	if len(seg) == 0 {
		return nil
	}
	out := make(map[string]string, len(seg))
	for k, v := range seg {
		out[k] = v
	}
	return out
}

// startTopology reads the tags once (New fails when it can't) and keeps
// them fresh until ctx ends.
func (c *client) startTopology(ctx context.Context, bg context.Context) error {
	t, err := c.loadTopology(ctx)
	if err != nil {
		return err
	}
	c.topo.Store(t)
	go func() {
		tick := time.NewTicker(c.opts.TopologyRefresh)
		defer tick.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-tick.C:
				var t *topology
				err := panics.Call("refreshing the topology tags", func() (err error) {
					t, err = c.loadTopology(bg)
					return err
				})
				if err != nil {
					klog.ErrorS(err, "Refreshing the topology tags failed; keeping the last reading")
					continue
				}
				c.topo.Store(t)
			}
		}
	}()
	return nil
}

// loadTopology reads the topology categories' tags, the objects they are
// on and the inventory's parent chain.
func (c *client) loadTopology(ctx context.Context) (*topology, error) {
	rc := rest.NewClient(c.conn.vim)
	wrapHTTP(rc.Client, c.opts)
	if err := rc.Login(ctx, url.UserPassword(c.opts.User, c.opts.Password)); err != nil {
		return nil, fmt.Errorf("vcenter: vAPI login for tags: %w", mapFault(err, nil))
	}
	defer func() { _ = rc.Logout(context.WithoutCancel(ctx)) }()
	m := tags.NewManager(rc)
	cats, err := m.GetCategories(ctx)
	if err != nil {
		return nil, fmt.Errorf("vcenter: read tag categories: %w", mapFault(err, nil))
	}
	type tagInfo struct{ category, name string }
	byID := map[string]tagInfo{}
	for _, want := range c.opts.TopologyCategories {
		var cat *tags.Category
		for i := range cats {
			if strings.EqualFold(cats[i].Name, want) {
				cat = &cats[i]
			}
		}
		if cat == nil {
			names := make([]string, 0, len(cats))
			for _, c := range cats {
				names = append(names, c.Name)
			}
			klog.InfoS("Topology tag category not found in vCenter: no segment will have it", "category", want, "categories", names)
			continue
		}
		ts, err := m.GetTagsForCategory(ctx, cat.ID)
		if err != nil {
			return nil, fmt.Errorf("vcenter: read the tags of category %s: %w", want, mapFault(err, nil))
		}
		for _, t := range ts {
			byID[t.ID] = tagInfo{want, t.Name}
		}
	}
	onObject := map[types.ManagedObjectReference]map[string]string{}
	if len(byID) > 0 {
		ids := make([]string, 0, len(byID))
		for id := range byID {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		attached, err := m.ListAttachedObjectsOnTags(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("vcenter: read the objects of the topology tags: %w", mapFault(err, nil))
		}
		for _, a := range attached {
			info := byID[a.TagID]
			for _, o := range a.ObjectIDs {
				ref := o.Reference()
				if onObject[ref] == nil {
					onObject[ref] = map[string]string{}
				}
				onObject[ref][info.category] = info.name
			}
		}
	}
	parents, err := c.parents(ctx)
	if err != nil {
		return nil, err
	}
	t := &topology{categories: c.opts.TopologyCategories, hosts: map[types.ManagedObjectReference]map[string]string{}}
	for ref := range parents {
		if ref.Type != "HostSystem" {
			continue
		}
		seg := map[string]string{}
		for cur, depth := ref, 0; cur.Value != "" && depth < 64; cur, depth = parents[cur], depth+1 {
			for cat, tag := range onObject[cur] {
				if _, nearer := seg[cat]; !nearer {
					seg[cat] = tag
				}
			}
		}
		t.hosts[ref] = seg
	}
	klog.V(2).InfoS("Topology tags read", "categories", c.opts.TopologyCategories, "tags", len(byID), "taggedObjects", len(onObject), "hosts", len(t.hosts))
	return t, nil
}

// parents maps hosts, clusters, folders and datacenters to their parents.
func (c *client) parents(ctx context.Context) (map[types.ManagedObjectReference]types.ManagedObjectReference, error) {
	vim := c.conn.vim
	kinds := []string{"HostSystem", "ClusterComputeResource", "ComputeResource", "Folder", "Datacenter"}
	v, err := view.NewManager(vim).CreateContainerView(ctx, vim.ServiceContent.RootFolder, kinds, true)
	if err != nil {
		return nil, fmt.Errorf("vcenter: inventory view for topology: %w", mapFault(err, nil))
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var content []types.ObjectContent
	if err := v.Retrieve(ctx, kinds, []string{"parent"}, &content); err != nil {
		return nil, fmt.Errorf("vcenter: read inventory parents: %w", mapFault(err, nil))
	}
	out := make(map[types.ManagedObjectReference]types.ManagedObjectReference, len(content))
	for _, oc := range content {
		out[oc.Obj] = types.ManagedObjectReference{}
		for _, p := range oc.PropSet {
			if ref, ok := p.Val.(types.ManagedObjectReference); ok && p.Name == "parent" {
				out[oc.Obj] = ref
			}
		}
	}
	return out, nil
}

// topologyOn says whether topology categories are configured.
func (c *client) topologyOn() bool { return len(c.opts.TopologyCategories) > 0 }

// nodeTopology is a node VM's segment.
func (c *client) nodeTopology(vmRef types.ManagedObjectReference) map[string]string {
	if !c.topologyOn() {
		return nil
	}
	return c.topo.Load().segment(c.inv.Load().hostOf(vmRef))
}

// hostOf is the host a VM runs on.
func (inv *inventory) hostOf(vmRef types.ManagedObjectReference) types.ManagedObjectReference {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if vm := inv.vms[vmRef]; vm != nil {
		return vm.host
	}
	return types.ManagedObjectReference{}
}

// annotateTopology sets each datastore's Topology: the segments in which
// it is reachable, i.e. mounted and accessible on every host of the
// segment that runs a VM of the inventory (every host of the segment when
// none does).
func (c *client) annotateTopology(list []Datastore, isNode func(*vmState) bool) {
	if !c.topologyOn() {
		return
	}
	t := c.topo.Load()
	if t == nil {
		return
	}
	inv := c.inv.Load()
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	type group struct {
		seg          map[string]string
		hosts, nodes []types.ManagedObjectReference
	}
	groups := map[string]*group{}
	var keys []string
	runsVM := map[types.ManagedObjectReference]bool{}
	for _, vm := range inv.vms {
		if isNode(vm) {
			runsVM[vm.host] = true
		}
	}
	for host := range inv.hosts {
		seg := t.segment(host)
		if len(seg) == 0 {
			continue
		}
		k := segmentKey(seg)
		g := groups[k]
		if g == nil {
			g = &group{seg: seg}
			groups[k] = g
			keys = append(keys, k)
		}
		g.hosts = append(g.hosts, host)
		if runsVM[host] {
			g.nodes = append(g.nodes, host)
		}
	}
	sort.Strings(keys)
	for i := range list {
		ds := inv.datastores[types.ManagedObjectReference{Type: "Datastore", Value: list[i].ID}]
		if ds == nil || !ds.accessible {
			continue
		}
		for _, k := range keys {
			g := groups[k]
			need := g.nodes
			if len(need) == 0 {
				need = g.hosts
			}
			all := true
			for _, h := range need {
				all = all && ds.mounts[h]
			}
			if all {
				list[i].Topology = append(list[i].Topology, g.seg)
			}
		}
	}
}

// segmentKey is a stable string of a segment.
func segmentKey(seg map[string]string) string {
	keys := make([]string, 0, len(seg))
	for k := range seg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, seg[k])
	}
	return b.String()
}

// NodeTopology finds a node VM by BIOS UUID and returns its segment, for a
// node plugin at start: it logs in, makes a handful of calls once, and logs
// out. Nil (no error) when opts has no TopologyCategories.
func NodeTopology(ctx context.Context, opts Options, nodeUUID string) (map[string]string, error) {
	opts.setDefaults()
	if len(opts.TopologyCategories) == 0 {
		return nil, nil
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	conn, err := dial(ctx, opts, nopObserver{})
	if err != nil {
		return nil, err
	}
	defer conn.logout(context.WithoutCancel(ctx))
	c := &client{opts: opts, conn: conn}
	ref, err := object.NewSearchIndex(conn.vim).FindByUuid(ctx, nil, normalizeVMUUID(nodeUUID), true, types.NewBool(false))
	if err != nil {
		return nil, fmt.Errorf("find node VM %s: %w", nodeUUID, mapFault(err, ErrNodeNotFound))
	}
	if ref == nil {
		return nil, fmt.Errorf("%w: no VM with BIOS UUID %q", ErrNodeNotFound, nodeUUID)
	}
	var vm mo.VirtualMachine
	if err := property.DefaultCollector(conn.vim).RetrieveOne(ctx, ref.Reference(), []string{"runtime.host"}, &vm); err != nil {
		return nil, fmt.Errorf("read the host of node VM %s: %w", nodeUUID, mapFault(err, ErrNodeNotFound))
	}
	if vm.Runtime.Host == nil {
		return nil, fmt.Errorf("node VM %s runs on no host", nodeUUID)
	}
	t, err := c.loadTopology(ctx)
	if err != nil {
		return nil, err
	}
	return t.segment(*vm.Runtime.Host), nil
}
