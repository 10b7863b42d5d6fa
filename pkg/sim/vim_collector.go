package sim

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// propertyCollector replaces the simulator's WaitForUpdatesEx, whose cost
// made the embedded vCenter, not the driver, the bottleneck: for every
// change of any object it re-read every object of every filter (each one
// deep-copied through XML), so a burst of N changes over M watched objects
// cost N×M copies, and 32 concurrent creates with 30 node VMs took 8 times
// a create task. This one re-reads only what changed: the objects a change
// is about (their watched properties, sent when they differ from what was
// sent before), and the filter's membership (which objects it covers, not
// their properties) only when objects came, went or a traversal object
// changed. What a client sees is the same: the initial state as Enter
// updates, then Modify (with the properties that changed), Enter and
// Leave. Everything else (filters, RetrieveProperties) is the simulator's.
type propertyCollector struct {
	simulator.PropertyCollector // by value: the simulator makes one per session by reflection

	qmu    sync.Mutex
	queue  []types.ObjectUpdate
	resync bool // the queue overflowed: recollect everything
	signal chan struct{}
	cancel context.CancelFunc

	// filters holds, per filter, what was last sent of each object.
	filters map[types.ManagedObjectReference]*filterState
	version int64
	// sentAt keeps what had been sent as of each of the last versions
	// handed out, so that a client whose answer was lost can ask again
	// with the version it knows and get the changes since (as vCenter
	// allows: any non-truncated version it returned).
	sentAt map[int64]map[types.ManagedObjectReference]*filterState

	// wmu: one WaitForUpdatesEx at a time per collector (a new one
	// cancels the one waiting).
	wmu sync.Mutex
}

// keptVersions bounds sentAt.
const keptVersions = 16

type filterState struct {
	sent map[types.ManagedObjectReference]map[string]any // object → property → value
}

// maxQueued bounds the updates kept for a collector nobody polls.
const maxQueued = 10000

// installCollector puts our collector in place of the root one; per-session
// copies of it, and every collector made by CreatePropertyCollector, are
// ours too.
func installCollector(m *simulator.Model, ref types.ManagedObjectReference) {
	pc := &propertyCollector{}
	pc.Self = ref
	m.Map().Put(pc)
}

func (pc *propertyCollector) init() {
	pc.qmu.Lock()
	defer pc.qmu.Unlock()
	if pc.signal == nil {
		pc.signal = make(chan struct{}, 1)
		pc.filters = map[types.ManagedObjectReference]*filterState{}
	}
}

func (pc *propertyCollector) enqueue(u types.ObjectUpdate) {
	pc.qmu.Lock()
	if len(pc.queue) >= maxQueued {
		pc.queue, pc.resync = nil, true
	} else if !pc.resync {
		pc.queue = append(pc.queue, u)
	}
	sig := pc.signal
	pc.qmu.Unlock()
	if sig != nil {
		select {
		case sig <- struct{}{}:
		default:
		}
	}
}

// PutObject, UpdateObject and RemoveObject hear every change of the
// registry (the collector is a handler of it while it is polled).
func (pc *propertyCollector) PutObject(_ *simulator.Context, o mo.Reference) {
	pc.enqueue(types.ObjectUpdate{Obj: o.Reference(), Kind: types.ObjectUpdateKindEnter})
}

func (pc *propertyCollector) UpdateObject(_ *simulator.Context, o mo.Reference, _ []types.PropertyChange) {
	pc.enqueue(types.ObjectUpdate{Obj: o.Reference(), Kind: types.ObjectUpdateKindModify})
}

func (pc *propertyCollector) RemoveObject(_ *simulator.Context, ref types.ManagedObjectReference) {
	pc.enqueue(types.ObjectUpdate{Obj: ref, Kind: types.ObjectUpdateKindLeave})
}

// CreatePropertyCollector makes one of ours.
func (pc *propertyCollector) CreatePropertyCollector(ctx *simulator.Context, _ *types.CreatePropertyCollector) soap.HasFault {
	c := &propertyCollector{}
	c.Self.Type = "PropertyCollector"
	return &methods.CreatePropertyCollectorBody{Res: &types.CreatePropertyCollectorResponse{
		Returnval: ctx.Session.Put(c).Reference(),
	}}
}

// DestroyPropertyCollector ends a wait, drops the filters and the collector.
func (pc *propertyCollector) DestroyPropertyCollector(ctx *simulator.Context, c *types.DestroyPropertyCollector) soap.HasFault {
	pc.CancelWaitForUpdates(&types.CancelWaitForUpdates{This: c.This})
	for _, ref := range pc.Filter {
		if f, ok := ctx.Session.Get(ref).(simulator.RegisterObject); ok {
			ctx.Map.RemoveHandler(f)
		}
		ctx.Session.Remove(ctx, ref)
	}
	ctx.Map.RemoveHandler(pc)
	ctx.Session.Remove(ctx, c.This)
	return &methods.DestroyPropertyCollectorBody{Res: &types.DestroyPropertyCollectorResponse{}}
}

// CancelWaitForUpdates ends a WaitForUpdatesEx in progress (RequestCanceled).
func (pc *propertyCollector) CancelWaitForUpdates(_ *types.CancelWaitForUpdates) soap.HasFault {
	pc.qmu.Lock()
	if pc.cancel != nil {
		pc.cancel()
	}
	pc.qmu.Unlock()
	return &methods.CancelWaitForUpdatesBody{Res: new(types.CancelWaitForUpdatesResponse)}
}

// WaitForUpdatesEx answers with what changed since the last call (all of
// it when Version is empty), waiting at most MaxWaitSeconds for a change.
func (pc *propertyCollector) WaitForUpdatesEx(ctx *simulator.Context, r *types.WaitForUpdatesEx) soap.HasFault {
	pc.init()
	wait, cancel := context.WithCancel(context.Background())
	once := false
	if r.Options != nil && r.Options.MaxWaitSeconds != nil {
		once = *r.Options.MaxWaitSeconds == 0
		if s := *r.Options.MaxWaitSeconds; s > 0 {
			cancel()
			wait, cancel = context.WithTimeout(context.Background(), time.Duration(s)*time.Second)
		}
	}
	defer cancel()
	pc.qmu.Lock()
	if pc.cancel != nil {
		pc.cancel() // a call still waiting ends: this one replaces it
	}
	pc.qmu.Unlock()
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	pc.qmu.Lock()
	pc.cancel = cancel
	pc.qmu.Unlock()

	body := &methods.WaitForUpdatesExBody{}
	if r.Version == "" {
		ctx.Map.AddHandler(pc)
		pc.qmu.Lock()
		pc.queue, pc.resync = nil, false
		pc.filters = map[types.ManagedObjectReference]*filterState{}
		pc.sentAt = map[int64]map[types.ManagedObjectReference]*filterState{}
		pc.qmu.Unlock()
	} else if fault := pc.rewind(r.Version); fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	for {
		set, fault := pc.collectChanges(ctx)
		if fault != nil {
			body.Fault_ = simulator.Fault("", fault)
			return body
		}
		if len(set.FilterSet) > 0 {
			pc.version++
			pc.remember()
			set.Version = strconv.FormatInt(pc.version, 10)
			body.Res = &types.WaitForUpdatesExResponse{Returnval: set}
			return body
		}
		if once {
			body.Res = &types.WaitForUpdatesExResponse{}
			return body
		}
		select {
		case <-wait.Done():
			if wait.Err() == context.Canceled {
				body.Fault_ = simulator.Fault("", new(types.RequestCanceled))
				return body
			}
			body.Res = &types.WaitForUpdatesExResponse{} // MaxWaitSeconds passed
			return body
		case <-pc.signal:
			// Let a burst of changes gather, as the simulator does.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-wait.Done():
			}
		}
	}
}

// rewind goes back to what had been sent as of version when it is not the
// last one handed out (that answer was lost): the next answer then carries
// every change since. An unknown version is InvalidCollectorVersion.
func (pc *propertyCollector) rewind(version string) types.BaseMethodFault {
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v > pc.version {
		return new(types.InvalidCollectorVersion)
	}
	if v == pc.version {
		return nil
	}
	then, ok := pc.sentAt[v]
	if !ok {
		return new(types.InvalidCollectorVersion)
	}
	pc.qmu.Lock()
	defer pc.qmu.Unlock()
	pc.filters = copySent(then)
	pc.resync = true // compare everything with what the client has
	return nil
}

// remember keeps what has been sent as of the current version.
func (pc *propertyCollector) remember() {
	if pc.sentAt == nil {
		pc.sentAt = map[int64]map[types.ManagedObjectReference]*filterState{}
	}
	pc.sentAt[pc.version] = copySent(pc.filters)
	delete(pc.sentAt, pc.version-keptVersions)
}

// copySent copies the filters' sent maps; the property maps they hold are
// replaced, never changed, so they are shared.
func copySent(in map[types.ManagedObjectReference]*filterState) map[types.ManagedObjectReference]*filterState {
	out := make(map[types.ManagedObjectReference]*filterState, len(in))
	for f, st := range in {
		sent := make(map[types.ManagedObjectReference]map[string]any, len(st.sent))
		for ref, props := range st.sent {
			sent[ref] = props
		}
		out[f] = &filterState{sent: sent}
	}
	return out
}

// WaitForUpdates is the old form of WaitForUpdatesEx.
func (pc *propertyCollector) WaitForUpdates(ctx *simulator.Context, r *types.WaitForUpdates) soap.HasFault {
	res := pc.WaitForUpdatesEx(ctx, &types.WaitForUpdatesEx{This: r.This, Version: r.Version})
	body := &methods.WaitForUpdatesBody{Fault_: res.Fault()}
	if ex, ok := res.(*methods.WaitForUpdatesExBody); ok && ex.Res != nil && ex.Res.Returnval != nil {
		body.Res = &types.WaitForUpdatesResponse{Returnval: *ex.Res.Returnval}
	}
	return body
}

// collectChanges turns the queued changes into filter updates.
func (pc *propertyCollector) collectChanges(ctx *simulator.Context) (*types.UpdateSet, types.BaseMethodFault) {
	pc.qmu.Lock()
	queue, resync := pc.queue, pc.resync
	pc.queue, pc.resync = nil, false
	filters := append([]types.ManagedObjectReference(nil), pc.Filter...)
	pc.qmu.Unlock()

	set := &types.UpdateSet{}
	live := map[types.ManagedObjectReference]bool{}
	for _, fref := range filters {
		live[fref] = true
		f, ok := ctx.Session.Get(fref).(*simulator.PropertyFilter)
		if !ok {
			continue
		}
		st := pc.filters[fref]
		fresh := st == nil
		if fresh {
			st = &filterState{sent: map[types.ManagedObjectReference]map[string]any{}}
			pc.filters[fref] = st
		}
		reported, traversed := specTypes(f.Spec)
		modified := map[types.ManagedObjectReference]bool{}
		membership := fresh || resync
		for _, u := range queue {
			switch {
			case u.Kind == types.ObjectUpdateKindModify && traversed[u.Obj.Type]:
				membership = true // a view, a folder, recentTask: who is in may have changed
			case u.Kind == types.ObjectUpdateKindModify:
				modified[u.Obj] = true
			case reported["*"] || reported[u.Obj.Type] || traversed[u.Obj.Type]:
				membership = true // an object came or went
			}
			if u.Kind == types.ObjectUpdateKindModify && (reported["*"] || reported[u.Obj.Type]) {
				modified[u.Obj] = true
			}
		}
		if resync {
			for ref := range st.sent {
				modified[ref] = true
			}
		}
		fu := types.PropertyFilterUpdate{Filter: fref}
		if membership {
			members, fault := pc.members(ctx, f.Spec)
			if fault != nil {
				return nil, fault
			}
			for ref := range st.sent {
				if !members[ref] {
					delete(st.sent, ref)
					delete(modified, ref)
					fu.ObjectSet = append(fu.ObjectSet, types.ObjectUpdate{Obj: ref, Kind: types.ObjectUpdateKindLeave})
				}
			}
			for ref := range members {
				if _, ok := st.sent[ref]; ok {
					continue
				}
				props, fault := pc.read(ctx, f.Spec, ref)
				if fault != nil {
					continue // gone meanwhile
				}
				st.sent[ref] = props
				delete(modified, ref)
				fu.ObjectSet = append(fu.ObjectSet, update(ref, types.ObjectUpdateKindEnter, props, nil))
			}
		}
		for ref := range modified {
			old, ok := st.sent[ref]
			if !ok {
				continue
			}
			props, fault := pc.read(ctx, f.Spec, ref)
			if fault != nil {
				continue // gone meanwhile: its Leave comes with the membership
			}
			st.sent[ref] = props
			if u := update(ref, types.ObjectUpdateKindModify, props, old); len(u.ChangeSet) > 0 {
				fu.ObjectSet = append(fu.ObjectSet, u)
			}
		}
		if len(fu.ObjectSet) > 0 {
			set.FilterSet = append(set.FilterSet, fu)
		}
	}
	for fref := range pc.filters {
		if !live[fref] {
			delete(pc.filters, fref)
		}
	}
	return set, nil
}

// specTypes are the types a filter reports (its property specs; "*" when
// one names an abstract type such as ManagedEntity) and those it traverses
// (its roots and traversal specs), whose changes may change who is in it.
func specTypes(spec types.PropertyFilterSpec) (reported, traversed map[string]bool) {
	reported, traversed = map[string]bool{}, map[string]bool{}
	for _, p := range spec.PropSet {
		switch p.Type {
		case "ManagedEntity", "ComputeResource", "ExtensibleManagedObject", "ManagedObject":
			reported["*"] = true
		default:
			reported[p.Type] = true
		}
	}
	var walk func([]types.BaseSelectionSpec)
	walk = func(ss []types.BaseSelectionSpec) {
		for _, s := range ss {
			if t, ok := s.(*types.TraversalSpec); ok && !traversed[t.Type] {
				traversed[t.Type] = true
				walk(t.SelectSet)
			}
		}
	}
	for _, o := range spec.ObjectSet {
		if len(o.SelectSet) > 0 {
			traversed[o.Obj.Type] = true
			walk(o.SelectSet)
		}
	}
	return reported, traversed
}

// members lists the objects a filter covers (the simulator's traversal,
// without reading their properties).
func (pc *propertyCollector) members(ctx *simulator.Context, spec types.PropertyFilterSpec) (map[types.ManagedObjectReference]bool, types.BaseMethodFault) {
	bare := spec
	bare.PropSet = make([]types.PropertySpec, len(spec.PropSet))
	for i, p := range spec.PropSet {
		bare.PropSet[i] = types.PropertySpec{Type: p.Type}
	}
	objs, fault := pc.retrieve(ctx, bare)
	if fault != nil {
		return nil, fault
	}
	out := make(map[types.ManagedObjectReference]bool, len(objs))
	for _, o := range objs {
		out[o.Obj] = true
	}
	return out, nil
}

// read reads one object's properties that the filter watches.
func (pc *propertyCollector) read(ctx *simulator.Context, spec types.PropertyFilterSpec, ref types.ManagedObjectReference) (map[string]any, types.BaseMethodFault) {
	one := types.PropertyFilterSpec{ObjectSet: []types.ObjectSpec{{Obj: ref}}, PropSet: spec.PropSet}
	objs, fault := pc.retrieve(ctx, one)
	if fault != nil {
		return nil, fault
	}
	props := map[string]any{}
	for _, o := range objs {
		for _, p := range o.PropSet {
			props[p.Name] = p.Val
		}
	}
	return props, nil
}

func (pc *propertyCollector) retrieve(ctx *simulator.Context, spec types.PropertyFilterSpec) ([]types.ObjectContent, types.BaseMethodFault) {
	res := pc.RetrievePropertiesEx(ctx, &types.RetrievePropertiesEx{SpecSet: []types.PropertyFilterSpec{spec}})
	if f := res.Fault(); f != nil {
		if mf, ok := f.VimFault().(types.BaseMethodFault); ok {
			return nil, mf
		}
		return nil, &types.SystemError{Reason: f.String}
	}
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return nil, nil
	}
	return body.Res.Returnval.Objects, nil
}

// update makes an object update of props: all of them (old nil) or those
// that differ from old, and those gone as removed.
func update(ref types.ManagedObjectReference, kind types.ObjectUpdateKind, props, old map[string]any) types.ObjectUpdate {
	u := types.ObjectUpdate{Obj: ref, Kind: kind}
	for _, name := range sortedKeys(props) {
		if prev, had := old[name]; old != nil && had && reflect.DeepEqual(prev, props[name]) {
			continue
		}
		u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: name, Op: types.PropertyChangeOpAssign, Val: props[name]})
	}
	for _, name := range sortedKeys(old) {
		if _, still := props[name]; !still {
			u.ChangeSet = append(u.ChangeSet, types.PropertyChange{Name: name, Op: types.PropertyChangeOpRemove})
		}
	}
	return u
}
