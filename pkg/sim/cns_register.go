package sim

import (
	"fmt"
	"os"

	"k8s.io/klog/v2"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// registerDisk makes an existing first-class disk a CNS volume (CnsCreateVolume
// with BackingDiskId, as vCenter's CNS does for statically provisioned
// volumes): the volume ID is the disk's ID, the datastore and size are the
// disk's; the disk's space enters the datastore's accounting. A disk that
// already is a CNS volume gives CnsAlreadyRegisteredFault; an unknown disk
// a NotFound fault, both in the result.
func (m *volumeManager) registerDisk(vctx *simulator.Context, spec cnstypes.CnsVolumeCreateSpec, diskID string) (*cnstypes.CnsVolumeCreateResult, types.BaseMethodFault) {
	if spec.Name == "" {
		return nil, invalidArgument("createSpecs.name", "volume name is empty")
	}
	result := &cnstypes.CnsVolumeCreateResult{Name: spec.Name}
	result.VolumeId = cnstypes.CnsVolumeId{Id: diskID}
	defer m.volLocks.lock(diskID)()
	if _, ok := m.get(diskID); ok {
		msg := fmt.Sprintf("Failed to register disk %s: it already is CNS volume %s", diskID, diskID)
		result.Fault = localized(&cnstypes.CnsAlreadyRegisteredFault{CnsFault: cnstypes.CnsFault{Reason: msg}, VolumeId: result.VolumeId}, msg)
		return result, nil
	}
	c := vctx.For(vctx.Map.Path)
	d, obj, found := m.findFCD(c, diskID)
	if !found {
		msg := fmt.Sprintf("Failed to register disk %s: no first-class disk with that ID", diskID)
		result.Fault = localized(&types.NotFound{}, msg)
		return result, nil
	}
	policyID := policyOf(spec)
	if good, why := m.policies.compatible(policyID, d); !good {
		result.Fault = cnsFault("Failed to register disk %s: %s", diskID, why)
		return result, nil
	}
	sizeMB := obj.Config.CapacityInMB
	if !m.inv.reserve(d, sizeMB*mib) {
		_, free := m.inv.space(d)
		result.Fault = cnsFault("Failed to register disk %s: Insufficient disk space on datastore '%s': %d bytes requested, %d bytes free", diskID, d.name, sizeMB*mib, free)
		return result, nil
	}
	v := newVolume(d, &obj, sizeMB)
	// A disk made outside CNS has a data file of 0 bytes in the simulator:
	// give it its size (sparse; data already there stays).
	if st, err := os.Stat(v.flatFile); err != nil || st.Size() < sizeMB*mib {
		if err := os.Truncate(v.flatFile, sizeMB*mib); err != nil {
			m.inv.release(d, sizeMB*mib)
			result.Fault = cnsFault("Failed to register disk %s: data file: %v", diskID, err)
			return result, nil
		}
	}
	v.cns.VolumeId.Id = diskID
	m.add(vctx, v, spec, policyID)
	klog.V(2).InfoS("First-class disk registered as a CNS volume", "volumeID", diskID, "name", spec.Name, "datastore", d.name, "sizeMB", sizeMB)
	result.PlacementResults = []cnstypes.CnsPlacementResult{{Datastore: d.ref}}
	return result, nil
}

// findFCD finds a first-class disk by ID in the VStorageObjectManager's
// catalog, on a datastore of the seeded inventory.
func (m *volumeManager) findFCD(c *simulator.Context, id string) (*dsModel, types.VStorageObject, bool) {
	vsom := c.Map.VStorageObjectManager()
	var d *dsModel
	var obj types.VStorageObject
	m.inv.withSim(func() {
		c.WithLock(vsom, func() {
			for ref, objs := range vsom.Catalog() {
				o, ok := objs[types.ID{Id: id}]
				if !ok {
					continue
				}
				if dm, known := m.inv.dsByRef[ref]; known {
					d, obj = dm, o.VStorageObject
					return
				}
			}
		})
	})
	return d, obj, d != nil
}
