package sim

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// A node VM added while the vCenter runs (AddNodeVM) is the driver's
// state, as the seeded ones are: it is kept in state/nodes/<name>.json and
// made again at the next Start on the same Dir, with the same managed
// object reference (a real vCenter keeps its VMs' references across a
// restart, and the driver's records name VMs by them).

// addedNodeRecord is a node VM added at run time, as kept across restarts.
type addedNodeRecord struct {
	Name  string    `json:"name"`
	Host  string    `json:"host"` // the host it was made on
	Ref   string    `json:"ref"`  // its managed object ID
	Added time.Time `json:"added"`
}

// AddNodeVM adds a node VM of this Kubernetes cluster on the named host
// (any host Hosts lists: a zone-B host, a workload-cluster host that lacks
// the shared datastores, ...), built as the seeded ones are (by-id dir,
// disk.enableUUID, NodeSCSIControllers PVSCSI controllers), powered on and
// listed by NodeVMs. Its name is the next free k8s-node-N (zone A),
// k8s-node-b-N (zone B) or k8s-node-w-N (an untagged cluster).
func (s *Sim) AddNodeVM(ctx context.Context, host string) (NodeVM, error) {
	s.addMu.Lock()
	defer s.addMu.Unlock()
	h, err := s.inv.host(host)
	if err != nil {
		return NodeVM{}, err
	}
	dc, ok := s.model.Map().Get(s.inv.dc).(*simulator.Datacenter)
	if !ok {
		return NodeVM{}, fmt.Errorf("no datacenter %s", s.inv.dc.Value)
	}
	ictx, c, err := s.internalClient(ctx)
	if err != nil {
		return NodeVM{}, err
	}
	name := s.inv.nextNodeName(h.zone)
	var n *nodeVM
	// Under simMu: making its disk writes a datastore, which the simulator
	// reads without its lock (inventory.simMu).
	s.inv.withSim(func() {
		takeRef(s.model) // see takeRef
		n, err = s.inv.makeNodeVM(ictx, c, dc, h.cluster, h.ref, name, s.opts.ByIDRoot)
	})
	if err != nil {
		return NodeVM{}, fmt.Errorf("add node VM %s on %s: %w", name, host, err)
	}
	s.inv.addNode(n)
	if d, ok := s.inv.dsByName[s.inv.homeDatastore(h.cluster.Self)]; ok {
		s.inv.publish(s.model.Service.Context.For(vim25.Path), d)
	}
	rec := addedNodeRecord{Name: name, Host: host, Ref: n.ref.Value, Added: time.Now().UTC()}
	if err := s.store.put("nodes", name, rec); err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping an added node VM failed", "vm", name)
	}
	s.lab.events.add(Event{Kind: EventVM, VM: n.ref.Value, Detail: "added on " + host})
	klog.InfoS("Node VM added", "vm", name, "host", host, "ref", n.ref.Value, "zone", n.zone)
	return s.inv.nodeInfo(n), nil
}

// nextNodeName is the first free node VM name of a zone.
func (inv *inventory) nextNodeName(zone string) string {
	format := "k8s-node-w-%d"
	switch zone {
	case ZoneA:
		format = "k8s-node-%d"
	case ZoneB:
		format = "k8s-node-b-%d"
	}
	taken := map[string]bool{}
	for _, n := range inv.nodeList() {
		taken[n.name] = true
	}
	for i := 1; ; i++ {
		if name := fmt.Sprintf(format, i); !taken[name] {
			return name
		}
	}
}

// addedNodes reads the node VMs added in earlier runs.
func (st *store) addedNodes() ([]addedNodeRecord, error) {
	names, err := st.names("nodes")
	if err != nil {
		return nil, err
	}
	out := make([]addedNodeRecord, 0, len(names))
	for _, name := range names {
		var rec addedNodeRecord
		if err := st.get("nodes", name, &rec); err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// restoreAddedNodes makes the node VMs added in earlier runs again, each
// under the reference it had: they were added after everything seeded, so
// their numbers are above every seeded object's, and the registry's
// counter is moved to hand each one out in turn.
func (inv *inventory) restoreAddedNodes(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, byIDRoot string, added []addedNodeRecord) error {
	sort.Slice(added, func(i, j int) bool { return refNumber(added[i].Ref) < refNumber(added[j].Ref) })
	for _, rec := range added {
		h, err := inv.host(rec.Host)
		if err != nil {
			return fmt.Errorf("node VM %s was added on host %s, which this inventory does not have: start with the same neighbours, or on a new --dir", rec.Name, rec.Host)
		}
		// CreateVM_Task takes a task reference, then the VM its own.
		if err := advanceRefCounter(inv.model, refNumber(rec.Ref)-2); err != nil {
			return fmt.Errorf("node VM %s added in an earlier run as %s: %w: start with the same options, or on a new --dir", rec.Name, rec.Ref, err)
		}
		n, err := inv.makeNodeVM(ctx, c, dc, h.cluster, h.ref, rec.Name, byIDRoot)
		if err != nil {
			return fmt.Errorf("node VM %s added in an earlier run: %w", rec.Name, err)
		}
		if n.ref.Value != rec.Ref {
			return fmt.Errorf("node VM %s added in an earlier run was %s and is %s now: start with the same options, or on a new --dir", rec.Name, rec.Ref, n.ref.Value)
		}
		inv.addNode(n)
	}
	return nil
}

// refNumber is the number of a managed object ID ("vm-42": 42).
func refNumber(value string) int64 {
	i := strings.LastIndex(value, "-")
	n, _ := strconv.ParseInt(value[i+1:], 10, 64)
	return n
}

// advanceRefCounter makes the registry's next reference number n+1. The
// counter only moves up: by AlignCounter when n is above every object's
// number, else (the model has objects of fixed, high numbers, such as its
// alarms) one placeholder reference at a time.
func advanceRefCounter(m *simulator.Model, n int64) error {
	next := func() int64 { return takeRef(m) }
	cur := next()
	if cur > n {
		return fmt.Errorf("the registry has handed out %d already", cur)
	}
	if n-cur > 1000 {
		setRefCounter(m, n)
		if cur = next() - 1; cur != n { // an object numbered above n
			return fmt.Errorf("the registry has an object numbered %d", cur)
		}
		setRefCounter(m, n) // next() took n+1
		return nil
	}
	for cur < n {
		cur = next()
	}
	return nil
}

// takeRef takes the registry's next reference number and returns it.
// AddNodeVM takes one before it makes a node VM, as advanceRefCounter does
// when it makes the VM again: the VM's number is then one its restore can
// reach whatever the restored inventory took before.
func takeRef(m *simulator.Model) int64 {
	r := m.Map()
	mark := &counterMark{Self: types.ManagedObjectReference{Type: "Task"}}
	r.Put(mark)
	r.Remove(m.Service.Context, mark.Self)
	return refNumber(mark.Self.Value)
}

// setRefCounter makes the registry's next reference (of any type: the
// counter is shared) number n+1, or more when an object already has a
// higher number.
func setRefCounter(m *simulator.Model, n int64) {
	r := m.Map()
	mark := &counterMark{Self: types.ManagedObjectReference{Type: "Task", Value: fmt.Sprintf("task-%d", n)}}
	r.Put(mark)
	_ = r.AlignCounter()
	r.Remove(m.Service.Context, mark.Self)
}
