package sim

import (
	"slices"
	"strings"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// The neighbours' VM tasks, and what a real vCenter shows for each
// (TaskInfo's name, descriptionId, reason, entity; how long it runs).
// Every one runs through the lab's startTask (vim_tasks.go): running, its
// progress moving, its effect at completion, holding its VM in the
// per-VM reconfiguration queue for its whole run, as vCenter holds a VM
// it migrates, snapshots or powers. Its duration is its method's figure
// in Realistic (lab_latency.go) spread by ±50% from the seeded source,
// whatever the lab's latency: they exist to overlap with ours.
//
//   - DRS migration: info.name unset (TaskInfo.name "is not set for
//     internal tasks", vSphere API reference, TaskInfo);
//     descriptionId "Drm.ExecuteVMotionLRO" (ManageIQ's event parser,
//     ManageIQ/manageiq-providers-vmware app/models/manageiq/providers/
//     vmware/infra_manager/event_parser.rb, names a task event without a
//     name by this descriptionId "DrsMigrateVM_Task"; scripts that report
//     DRS moves match it beside VirtualMachine.migrate and
//     VirtualMachine.relocate); reason TaskReasonSystem ("the task was
//     started by the system", vSphere API reference); entity the VM. It
//     moves a running VM, sometimes one of our node VMs, to another host
//     of its cluster that mounts every datastore of the VM's files and
//     disks (vMotion needs them shared; a VM with a disk on a datastore
//     no other host of its cluster mounts is not moved). runtime.host
//     (and summary.runtime.host, the hosts' vm lists, NodeVMs' Host)
//     change when it completes.
//   - Storage vMotion: info.name "RelocateVM_Task", descriptionId
//     "VirtualMachine.relocate" (the same scripts: a user's migrate from
//     the vSphere Client); reason TaskReasonUser, Neighbours.User; entity
//     the VM. It moves an unrelated VM's directory (its .vmx and the disks
//     in it) to another shared datastore its host mounts.
//   - Backup snapshot: CreateSnapshot_Task, "VirtualMachine.createSnapshot",
//     then, when the backup has read the disks (30 s to 3 min, assumed),
//     RemoveSnapshot_Task, "VirtualMachine.removeSnapshot" (the two
//     descriptionIds vmware-tanzu/vm-operator, pkg/context, lists as the
//     snapshot tasks that block a VM); reason TaskReasonUser BackupUser;
//     entity the VM, unrelated or ours. The snapshot is named as a backup
//     product names its temporary one, without memory and unquiesced
//     (Veeam KB1790: "VEEAM BACKUP TEMPORARY SNAPSHOT", memory False,
//     quiesce False, removed once all disks are read). Not modelled: on a
//     real vCenter a node VM's snapshot holds the CNS disks attached to it,
//     and detaching one fails until the snapshot goes ("Invalid
//     configuration for device '0'", kubernetes-sigs/vsphere-csi-driver
//     issue 478); here the detach waits for the snapshot task, then works.
//   - Scheduled power operation: PowerOffVM_Task "VirtualMachine.powerOff"
//     or PowerOnVM_Task "VirtualMachine.powerOn" (openshift/
//     machine-api-operator pkg/controller/vsphere/reconciler.go matches
//     VirtualMachine.powerOff); reason TaskReasonSchedule with the
//     scheduled task's name and reference (vSphere API reference,
//     TaskReasonSchedule); entity an unrelated VM, powered off when on and
//     on when off.
//   - The other cluster's CNS calls: neighbour_cns.go.

// oursShare is how often a DRS migration or a backup tries one of our
// node VMs first.
const oursShare = 0.25

// vmState is what a neighbour task needs to know of a VM, read under its
// lock.
type vmState struct {
	ref        types.ManagedObjectReference
	name       string
	on         bool
	template   bool
	host       types.ManagedObjectReference
	home       string                         // the datastore of its .vmx
	datastores []types.ManagedObjectReference // of its files and every disk
}

// readVM reads a VM's state; false when it is gone.
func readVM(vctx *simulator.Context, ref types.ManagedObjectReference) (vmState, bool) {
	vm, ok := lookupVM(vctx, ref)
	if !ok {
		return vmState{}, false
	}
	st := vmState{ref: ref}
	vctx.WithLock(vm, func() {
		st.name = vm.Name
		st.on = vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
		if vm.Runtime.Host != nil {
			st.host = *vm.Runtime.Host
		}
		add := func(ds types.ManagedObjectReference) {
			if !slices.Contains(st.datastores, ds) {
				st.datastores = append(st.datastores, ds)
			}
		}
		for _, ds := range vm.Datastore {
			add(ds)
		}
		if vm.Config == nil {
			return
		}
		st.template = vm.Config.Template
		st.home = datastoreOfPath(vm.Config.Files.VmPathName)
		for _, dev := range vm.Config.Hardware.Device {
			if disk, ok := dev.(*types.VirtualDisk); ok {
				if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok && b.GetVirtualDeviceFileBackingInfo().Datastore != nil {
					add(*b.GetVirtualDeviceFileBackingInfo().Datastore)
				}
			}
		}
	})
	return st, true
}

// datastoreOfPath is the datastore of "[ds] dir/file".
func datastoreOfPath(p string) string {
	if name, _, ok := strings.Cut(strings.TrimPrefix(p, "["), "]"); ok {
		return name
	}
	return ""
}

// mountsAll says whether h mounts every one of dss.
func mountsAll(h *hostModel, dss []types.ManagedObjectReference) bool {
	for _, ds := range dss {
		if !h.mounts(ds) {
			return false
		}
	}
	return true
}

// vmLists are the VMs a kind may pick, ours and the unrelated ones
// (templates left out), ours first with probability oursShare.
func (nb *neighbourhood) vmLists(withOurs bool, kinds ...string) [][]types.ManagedObjectReference {
	if nb.target != nil { // StartNeighbourTaskOn: that VM or none
		return [][]types.ManagedObjectReference{{*nb.target}}
	}
	var ours, theirs []types.ManagedObjectReference
	if withOurs {
		for _, n := range nb.s.inv.nodeList() {
			if !n.deleted.get() {
				ours = append(ours, n.ref)
			}
		}
	}
	if ni := nb.s.inv.neighbours; ni != nil {
		for _, v := range ni.vms {
			if slices.Contains(kinds, v.kind) {
				theirs = append(theirs, v.ref)
			}
		}
	}
	if withOurs && nb.chance(oursShare) {
		return [][]types.ManagedObjectReference{ours, theirs}
	}
	return [][]types.ManagedObjectReference{theirs, ours}
}

// find walks the lists from a random place in each and returns the first
// VM ok accepts.
func (nb *neighbourhood) find(vctx *simulator.Context, lists [][]types.ManagedObjectReference, ok func(vmState) bool) (vmState, bool) {
	for _, list := range lists {
		if len(list) == 0 {
			continue
		}
		first := nb.pick(len(list))
		for i := range list {
			if st, found := readVM(vctx, list[(first+i)%len(list)]); found && ok(st) {
				return st, true
			}
		}
	}
	return vmState{}, false
}

// inner makes the simulator's own call in-process (runInner) under simMu:
// snapshots and power operations write files through datastores, which
// the simulator reads without their lock (inventory.simMu).
func (nb *neighbourhood) inner(vctx *simulator.Context, call innerCall) (res types.AnyType, fault types.BaseMethodFault) {
	nb.s.inv.withSim(func() { res, fault = nb.s.lab.runInner(vctx, call) })
	return res, fault
}

// launch starts a task built outside start (a backup's removal) and
// counts it.
func (nb *neighbourhood) launch(kind NeighbourTaskKind, vctx *simulator.Context, spec taskSpec) types.ManagedObjectReference {
	ref := nb.s.lab.startTask(vctx, spec)
	nb.mu.Lock()
	nb.started[kind]++
	nb.mu.Unlock()
	klog.V(2).InfoS("Neighbour task started", "kind", kind, "task", ref.Value, "entity", spec.entity.Value, "duration", spec.duration)
	return ref
}
