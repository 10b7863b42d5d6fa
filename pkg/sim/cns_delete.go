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

// CnsDeleteVolume deletes one volume per call. Unknown: NotFound in the
// result. Attached: ResourceInUse in the result. With DeleteDisk the disk,
// its files and its space go too; without, only the CNS record goes (the
// first-class disk stays, as on real vCenter).
func (m *volumeManager) CnsDeleteVolume(ctx *simulator.Context, req *cnstypes.CnsDeleteVolume) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsDeleteVolume", run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.VolumeIds) != 1 {
			return nil, invalidArgument("volumeIds", "CnsDeleteVolume takes exactly one volume ID, got %d", len(req.VolumeIds))
		}
		id := req.VolumeIds[0].Id
		res := opResult(id, m.delete(vctx, id, req.DeleteDisk))
		return batch(&res), nil
	}})
	return &methods.CnsDeleteVolumeBody{Res: &cnstypes.CnsDeleteVolumeResponse{Returnval: ref}}
}

func (m *volumeManager) delete(vctx *simulator.Context, id string, deleteDisk bool) *types.LocalizedMethodFault {
	defer m.volLocks.lock(id)()
	m.mu.Lock()
	v, ok := m.volumes[id]
	if ok && v.vm != nil {
		vm := *v.vm
		m.mu.Unlock()
		return inUse(id, vm, entityName(vctx.Map, vm))
	}
	if n := len(m.snaps[id]); ok && n > 0 {
		m.mu.Unlock()
		return hasSnapshots("delete", id, n)
	}
	if ok {
		delete(m.volumes, id)
	}
	m.mu.Unlock()
	if !ok {
		msg := fmt.Sprintf("volume %s not found", id)
		return localized(&types.NotFound{}, msg)
	}
	m.saveVolume(id) // the record goes before the files do
	switch {
	case v.share != nil:
		m.deleteShare(vctx, v) // a file volume's share goes with it
	case deleteDisk:
		m.removeDisk(vctx, v)
		m.inv.release(v.ds, v.sizeMB*mib)
		m.inv.publish(vctx, v.ds)
	}
	klog.V(2).InfoS("CNS volume deleted", "volumeID", id, "deleteDisk", deleteDisk)
	return nil
}

// removeDisk deletes the first-class disk and its files; every step is
// tried even when an earlier one fails. It drops the disk from the
// VStorageObjectManager's catalog itself: the simulator's delete task
// removes files in a detached task that races with datastore updates.
func (m *volumeManager) removeDisk(vctx *simulator.Context, v *volume) {
	c := vctx.For(vctx.Map.Path)
	vsom := c.Map.VStorageObjectManager()
	m.inv.withSim(func() {
		c.WithLock(vsom, func() {
			delete(vsom.Catalog()[v.ds.ref], types.ID{Id: v.cns.VolumeId.Id})
		})
	})
	for _, f := range []string{v.flatFile, v.descFile} {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			klog.ErrorS(err, "remove volume file", "volumeID", v.cns.VolumeId.Id, "file", f)
		}
	}
}
