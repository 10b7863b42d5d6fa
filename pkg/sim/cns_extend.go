package sim

import (
	"fmt"
	"os"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsExtendVolume grows one volume per call: the record, the data file,
// the datastore's use, the first-class disk, the VM's disk device and the
// loop device when attached. Shrinking is refused.
func (m *volumeManager) CnsExtendVolume(ctx *simulator.Context, req *cnstypes.CnsExtendVolume) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsExtendVolume", run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.ExtendSpecs) != 1 {
			return nil, invalidArgument("extendSpecs", "CnsExtendVolume takes exactly one spec, got %d", len(req.ExtendSpecs))
		}
		spec := req.ExtendSpecs[0]
		res := opResult(spec.VolumeId.Id, m.extend(vctx, spec.VolumeId.Id, spec.CapacityInMb))
		return batch(&res), nil
	}})
	return &methods.CnsExtendVolumeBody{Res: &cnstypes.CnsExtendVolumeResponse{Returnval: ref}}
}

func (m *volumeManager) extend(vctx *simulator.Context, id string, sizeMB int64) *types.LocalizedMethodFault {
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		return localized(&types.NotFound{}, fmt.Sprintf("volume %s not found", id))
	}
	if n := m.snapshotCount(id); n > 0 && sizeMB != v.sizeMB {
		return hasSnapshots("extend", id, n)
	}
	switch {
	case sizeMB < v.sizeMB:
		return cnsFault("cannot shrink volume %s from %d MB to %d MB", id, v.sizeMB, sizeMB)
	case sizeMB == v.sizeMB:
		return nil
	case v.share != nil:
		return m.extendShare(vctx, v, sizeMB)
	}
	delta := (sizeMB - v.sizeMB) * mib
	if !m.inv.reserve(v.ds, delta) {
		_, free := m.inv.space(v.ds)
		return cnsFault("Failed to extend volume %s: Insufficient disk space on datastore '%s': %d more bytes requested, %d bytes free", id, v.ds.name, delta, free)
	}
	c := vctx.For(vctx.Map.Path)
	// The record goes first: a vCenter killed between it and the file
	// grows the file when it starts again (state_restore.go), as the extend had
	// promised; the other way round the disk would outgrow its record.
	m.setSize(id, sizeMB)
	m.saveVolume(id)
	if err := os.Truncate(v.flatFile, sizeMB*mib); err != nil {
		m.setSize(id, v.sizeMB)
		m.saveVolume(id)
		m.inv.release(v.ds, delta)
		return cnsFault("extend volume %s: %v", id, err)
	}
	m.growFCD(c, v, sizeMB)
	if v.vm != nil {
		if vm, ok := lookupVM(c, *v.vm); ok {
			unlock := m.vmLocks.lock(v.vm.Value)
			defer unlock()
			if disk := findDisk(c, vm, id); disk != nil {
				disk.CapacityInKB, disk.CapacityInBytes = sizeMB*1024, sizeMB*mib
				if f := m.reconfigure(c, vm, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: disk}, v.ds); f != nil {
					klog.InfoS("extend: growing the VM's disk device failed", "volumeID", id, "vm", vm.Name, "fault", fmt.Sprintf("%T", f))
				}
			}
		}
		if err := m.hv.resize(id); err != nil {
			klog.ErrorS(err, "extend: losetup -c failed", "volumeID", id)
		}
	}
	m.inv.publish(c, v.ds)
	klog.V(2).InfoS("CNS volume extended", "volumeID", id, "sizeMB", sizeMB)
	return nil
}

// setSize records a volume's size in its CNS record and first-class disk.
func (m *volumeManager) setSize(id string, sizeMB int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.volumes[id]
	if !ok {
		return
	}
	cur.sizeMB = sizeMB
	details := cnstypes.CnsBlockBackingDetails{}
	if old, ok := cur.cns.BackingObjectDetails.(*cnstypes.CnsBlockBackingDetails); ok {
		details = *old
	}
	details.CapacityInMb = sizeMB
	cur.cns.BackingObjectDetails = &details // copy-on-write
	cur.fcd.Config.CapacityInMB = sizeMB
}

// growFCD records the new size on the first-class disk.
func (m *volumeManager) growFCD(c *simulator.Context, v volume, sizeMB int64) {
	vsom := c.Map.VStorageObjectManager()
	m.inv.withSim(func() {
		c.WithLock(vsom, func() {
			if o, ok := vsom.Catalog()[v.ds.ref][types.ID{Id: v.cns.VolumeId.Id}]; ok {
				o.Config.CapacityInMB = sizeMB
			}
		})
	})
}
