package sim

import (
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// DRS migrations (vMotions by the system), as neighbour_tasks.go
// describes them.

// drsMigration moves a running VM to another host of its cluster.
func (nb *neighbourhood) drsMigration(vctx *simulator.Context, d time.Duration) (taskSpec, error) {
	var target *hostModel
	st, ok := nb.find(vctx, nb.vmLists(true, NeighbourWorkload, NeighbourOtherNode), func(st vmState) bool {
		if !st.on || st.template {
			return false
		}
		target = nb.migrationTarget(st)
		return target != nil
	})
	if !ok {
		return taskSpec{}, errNoCandidate
	}
	return taskSpec{
		method: "Drm.ExecuteVMotionLRO", unnamed: true, describe: "Drm.ExecuteVMotionLRO",
		entity: st.ref, reason: &types.TaskReasonSystem{},
		vms:      []types.ManagedObjectReference{st.ref},
		duration: nb.spread(Realistic["MigrateVM_Task"], d),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			return nil, nb.migrate(vctx, st.ref, target)
		},
	}, nil
}

// migrationTarget picks another host of the VM's cluster that mounts
// every datastore the VM uses; nil when there is none.
func (nb *neighbourhood) migrationTarget(st vmState) *hostModel {
	cur, ok := nb.s.inv.hostOf(st.host)
	if !ok {
		return nil
	}
	var fit []*hostModel
	for _, h := range nb.s.inv.hosts {
		if h.cluster.Self == cur.cluster.Self && h.ref != cur.ref && mountsAll(h, st.datastores) {
			fit = append(fit, h)
		}
	}
	if len(fit) == 0 {
		return nil
	}
	return fit[nb.pick(len(fit))]
}

// migrate is a vMotion's effect: the VM runs on target from now on.
func (nb *neighbourhood) migrate(vctx *simulator.Context, ref types.ManagedObjectReference, target *hostModel) types.BaseMethodFault {
	st, ok := readVM(vctx, ref)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	if !st.on {
		return &types.InvalidPowerState{RequestedState: types.VirtualMachinePowerStatePoweredOn, ExistingState: types.VirtualMachinePowerStatePoweredOff}
	}
	for _, ds := range st.datastores { // a disk came meanwhile
		if !target.mounts(ds) {
			return &types.DatastoreNotWritableOnHost{InvalidDatastore: types.InvalidDatastore{Datastore: &ds}, Host: target.ref}
		}
	}
	if st.host == target.ref {
		return nil
	}
	nb.moveListed(vctx, st.host, target.ref, "vm", ref)
	if vm, ok := lookupVM(vctx, ref); ok {
		to := target.ref
		vctx.WithLock(vm, func() {
			vctx.Update(vm, []types.PropertyChange{{Name: "runtime.host", Val: &to}, {Name: "summary.runtime.host", Val: &to}})
		})
	}
	if n, ok := nb.s.inv.nodeOf(ref); ok {
		nb.s.inv.nodeMu.Lock()
		n.hostName = target.name
		nb.s.inv.nodeMu.Unlock()
	}
	klog.V(2).InfoS("Neighbour: DRS moved a VM", "vm", st.name, "from", entityName(vctx.Map, st.host), "to", target.name)
	return nil
}

// moveListed moves ref from the list property of one object (a host's
// vm, a datastore's vm) to the same list of another, as watchers see,
// under simMu: the simulator reads datastores without their lock
// (inventory.simMu).
func (nb *neighbourhood) moveListed(vctx *simulator.Context, from, to types.ManagedObjectReference, prop string, ref types.ManagedObjectReference) {
	nb.s.inv.withSim(func() { moveListed(vctx, from, to, prop, ref) })
}

func moveListed(vctx *simulator.Context, from, to types.ManagedObjectReference, prop string, ref types.ManagedObjectReference) {
	edit := func(obj types.ManagedObjectReference, f func([]types.ManagedObjectReference) []types.ManagedObjectReference) {
		o := vctx.Map.Get(obj)
		if o == nil {
			return
		}
		vctx.WithLock(o, func() {
			var list []types.ManagedObjectReference
			switch x := o.(type) {
			case *simulator.HostSystem:
				list = x.Vm
			case *simulator.Datastore:
				list = x.Vm
			default:
				return
			}
			vctx.Update(o, []types.PropertyChange{{Name: prop, Val: f(slices.Clone(list))}})
		})
	}
	edit(from, func(l []types.ManagedObjectReference) []types.ManagedObjectReference {
		return slices.DeleteFunc(l, func(r types.ManagedObjectReference) bool { return r == ref })
	})
	edit(to, func(l []types.ManagedObjectReference) []types.ManagedObjectReference {
		if slices.Contains(l, ref) {
			return l
		}
		return append(l, ref)
	})
}
