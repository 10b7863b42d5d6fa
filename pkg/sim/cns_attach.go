package sim

import (
	"fmt"
	"sort"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	vimmethods "github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsAttachVolume attaches each spec's volume to its VM: a VirtualDisk
// device is added through the VM's ReconfigVM_Task, backed by the volume's
// disk file, with the volume's own disk UUID. Per-spec failures are in the
// results; the task succeeds.
func (m *volumeManager) CnsAttachVolume(ctx *simulator.Context, req *cnstypes.CnsAttachVolume) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsAttachVolume", vms: specVMs(req.AttachSpecs), run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.AttachSpecs) == 0 {
			return nil, invalidArgument("attachSpecs", "no attach specs")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.AttachSpecs {
			disk, fault := m.attach(vctx, spec.VolumeId.Id, spec.Vm)
			results = append(results, &cnstypes.CnsVolumeAttachResult{
				CnsVolumeOperationResult: opResult(spec.VolumeId.Id, fault),
				DiskUUID:                 disk,
			})
		}
		return batch(results...), nil
	}})
	return &methods.CnsAttachVolumeBody{Res: &cnstypes.CnsAttachVolumeResponse{Returnval: ref}}
}

// CnsDetachVolume removes each spec's disk from its VM.
func (m *volumeManager) CnsDetachVolume(ctx *simulator.Context, req *cnstypes.CnsDetachVolume) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsDetachVolume", vms: specVMs(req.DetachSpecs), run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.DetachSpecs) == 0 {
			return nil, invalidArgument("detachSpecs", "no detach specs")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.DetachSpecs {
			res := opResult(spec.VolumeId.Id, m.detach(vctx, spec.VolumeId.Id, spec.Vm))
			results = append(results, &res)
		}
		return batch(results...), nil
	}})
	return &methods.CnsDetachVolumeBody{Res: &cnstypes.CnsDetachVolumeResponse{Returnval: ref}}
}

// specVMs are the VMs a batch of attach or detach specs reconfigures.
func specVMs(specs []cnstypes.CnsVolumeAttachDetachSpec) []types.ManagedObjectReference {
	vms := make([]types.ManagedObjectReference, 0, len(specs))
	for _, s := range specs {
		vms = append(vms, s.Vm)
	}
	return vms
}

func lookupVM(vctx *simulator.Context, ref types.ManagedObjectReference) (*simulator.VirtualMachine, bool) {
	if ref.Type != "VirtualMachine" {
		return nil, false
	}
	vm, ok := vctx.Map.Get(ref).(*simulator.VirtualMachine)
	return vm, ok
}

func (m *volumeManager) attach(vctx *simulator.Context, id string, vmRef types.ManagedObjectReference) (string, *types.LocalizedMethodFault) {
	vm, ok := lookupVM(vctx, vmRef)
	if !ok {
		return "", vmNotFound(vmRef)
	}
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		return "", volumeNotFound(id)
	}
	if v.share != nil {
		return "", notBlock(id, "attach")
	}
	if v.vm != nil {
		if *v.vm == vmRef {
			return diskUUIDHex(v.diskUUID), nil
		}
		return "", inUse(id, *v.vm, entityName(vctx.Map, *v.vm))
	}
	defer m.vmLocks.lock(vmRef.Value)()
	disk, fault := m.newDiskDevice(vctx, vm, &v)
	if fault != nil {
		return "", fault
	}
	c := vctx.For(vctx.Map.Path)
	if f := m.reconfigure(c, vm, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk}, v.ds); f != nil {
		return "", &types.LocalizedMethodFault{Fault: f, LocalizedMessage: fmt.Sprintf("attach volume %s to VM %s: reconfigure failed", id, vm.Name)}
	}
	if node, ok := m.inv.nodeOf(vmRef); ok && !node.poweredOff.get() {
		if err := m.hv.attach(id, v.flatFile, node.byIDDir, v.diskUUID); err != nil {
			m.removeDevice(c, vm, id, v.ds)
			return "", cnsFault("attach volume %s to VM %s: hypervisor: %v", id, vm.Name, err)
		}
	}
	m.mu.Lock()
	if cur, ok := m.volumes[id]; ok {
		ref := vmRef
		cur.vm = &ref
	}
	m.mu.Unlock()
	m.saveVolume(id)
	klog.V(2).InfoS("CNS volume attached", "volumeID", id, "vm", vm.Name, "diskUUID", diskUUIDHex(v.diskUUID))
	return diskUUIDHex(v.diskUUID), nil
}

// newDiskDevice builds the VirtualDisk for a volume at the first free unit
// of the VM's SCSI controllers, in bus order, as vCenter places a disk that
// names no unit; a VM whose controllers are full refuses it.
func (m *volumeManager) newDiskDevice(vctx *simulator.Context, vm *simulator.VirtualMachine, v *volume) (*types.VirtualDisk, *types.LocalizedMethodFault) {
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: v.diskPath, Datastore: &v.ds.ref},
				DiskMode:                     string(types.VirtualDiskModePersistent),
				ThinProvisioned:              types.NewBool(true),
				Uuid:                         v.diskUUID,
			},
		},
		CapacityInKB:    v.sizeMB * 1024,
		CapacityInBytes: v.sizeMB * mib,
		VDiskId:         &types.ID{Id: v.cns.VolumeId.Id},
	}
	var fault *types.LocalizedMethodFault
	vctx.WithLock(vm, func() {
		devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
		var controllers []*types.VirtualSCSIController
		for _, d := range devices {
			if c, ok := d.(types.BaseVirtualSCSIController); ok {
				controllers = append(controllers, c.GetVirtualSCSIController())
			}
		}
		if len(controllers) == 0 {
			fault = cnsFault("VM %s has no SCSI controller", vm.Name)
			return
		}
		sort.Slice(controllers, func(i, j int) bool { return controllers[i].BusNumber < controllers[j].BusNumber })
		used := map[int32]map[int32]bool{}
		for _, d := range devices {
			if b := d.GetVirtualDevice(); b.UnitNumber != nil {
				if used[b.ControllerKey] == nil {
					used[b.ControllerKey] = map[int32]bool{}
				}
				used[b.ControllerKey][*b.UnitNumber] = true
			}
		}
		key, unit := int32(0), int32(-1)
	find:
		for _, c := range controllers {
			for u := int32(0); u < 16; u++ {
				if u != 7 && !used[c.Key][u] { // unit 7 is the controller's own
					key, unit = c.Key, u
					break find
				}
			}
		}
		if unit < 0 {
			// What CNS says when the VM's controllers are full and it can't add one.
			fault = cnsFault("CNS: Failed to attach disk because missing SCSI controller (VM %s: its %d SCSI controllers are full)", vm.Name, len(controllers))
			return
		}
		disk.ControllerKey = key
		disk.UnitNumber = &unit
		disk.Key = -1
	})
	return disk, fault
}

// reconfigure runs a one-device ReconfigVM_Task in-process, waits, and
// republishes the datastore's free space (the simulator charges a VM disk's
// size to its datastore; an FCD's space is already charged), all under
// simMu so no reader sees the simulator's number.
func (m *volumeManager) reconfigure(c *simulator.Context, vm *simulator.VirtualMachine, change *types.VirtualDeviceConfigSpec, d *dsModel) types.BaseMethodFault {
	var fault types.BaseMethodFault
	m.inv.withSim(func() {
		defer m.inv.publishLocked(c, d)
		body, ok := vm.ReconfigVMTask(c, &types.ReconfigVM_Task{
			This: vm.Self,
			Spec: types.VirtualMachineConfigSpec{DeviceChange: []types.BaseVirtualDeviceConfigSpec{change}},
		}).(*vimmethods.ReconfigVM_TaskBody)
		if !ok || body.Res == nil {
			fault = &types.SystemError{Reason: "ReconfigVM_Task failed to start"}
			return
		}
		if info := waitTask(c, body.Res.Returnval); info.Error != nil {
			fault = info.Error.Fault
		}
	})
	return fault
}

// findDisk finds the volume's VirtualDisk on the VM (a copy).
func findDisk(c *simulator.Context, vm *simulator.VirtualMachine, id string) *types.VirtualDisk {
	var found *types.VirtualDisk
	c.WithLock(vm, func() {
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && disk.VDiskId != nil && disk.VDiskId.Id == id {
				cp := *disk
				found = &cp
				return
			}
		}
	})
	return found
}

func (m *volumeManager) removeDevice(c *simulator.Context, vm *simulator.VirtualMachine, id string, d *dsModel) types.BaseMethodFault {
	disk := findDisk(c, vm, id)
	if disk == nil {
		return nil
	}
	return m.reconfigure(c, vm, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: disk}, d)
}

func (m *volumeManager) detach(vctx *simulator.Context, id string, vmRef types.ManagedObjectReference) *types.LocalizedMethodFault {
	vm, ok := lookupVM(vctx, vmRef)
	if !ok {
		return vmNotFound(vmRef)
	}
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		return volumeNotFound(id)
	}
	if v.share != nil {
		return notBlock(id, "detach")
	}
	if v.vm == nil || *v.vm != vmRef {
		return cnsFault("volume %s is not attached to VM %s", id, vm.Name)
	}
	defer m.vmLocks.lock(vmRef.Value)()
	c := vctx.For(vctx.Map.Path)
	if err := m.hv.detach(id); err != nil {
		return cnsFault("detach volume %s from VM %s: hypervisor: %v", id, vm.Name, err)
	}
	if f := m.removeDevice(c, vm, id, v.ds); f != nil {
		return &types.LocalizedMethodFault{Fault: f, LocalizedMessage: fmt.Sprintf("detach volume %s from VM %s: reconfigure failed", id, vm.Name)}
	}
	m.mu.Lock()
	if cur, ok := m.volumes[id]; ok {
		cur.vm = nil
	}
	m.mu.Unlock()
	m.saveVolume(id)
	klog.V(2).InfoS("CNS volume detached", "volumeID", id, "vm", vm.Name)
	return nil
}
