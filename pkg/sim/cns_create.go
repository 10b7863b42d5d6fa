package sim

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	vimmethods "github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const mib = int64(units.MB)

// CnsCreateVolume creates one block volume per call (as real vCenter) on the
// first candidate datastore that satisfies the policy and has room.
// Placement failures come back in the volume result's Fault (a CnsFault),
// with the task itself successful, as real CNS reports them.
func (m *volumeManager) CnsCreateVolume(ctx *simulator.Context, req *cnstypes.CnsCreateVolume) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsCreateVolume", run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.CreateSpecs) != 1 {
			return nil, invalidArgument("createSpecs", "CnsCreateVolume takes exactly one spec, got %d", len(req.CreateSpecs))
		}
		res, fault := m.create(vctx, req.CreateSpecs[0])
		if fault != nil {
			return nil, fault
		}
		return batch(res), nil
	}})
	return &methods.CnsCreateVolumeBody{Res: &cnstypes.CnsCreateVolumeResponse{Returnval: ref}}
}

func policyOf(spec cnstypes.CnsVolumeCreateSpec) string {
	for _, p := range spec.Profile {
		if d, ok := p.(*types.VirtualMachineDefinedProfileSpec); ok && d.ProfileId != "" {
			return d.ProfileId
		}
	}
	return ""
}

func (m *volumeManager) create(vctx *simulator.Context, spec cnstypes.CnsVolumeCreateSpec) (*cnstypes.CnsVolumeCreateResult, types.BaseMethodFault) {
	if isFileSpec(spec) {
		return m.createFile(vctx, spec)
	}
	details, ok := spec.BackingObjectDetails.(*cnstypes.CnsBlockBackingDetails)
	if !ok || (spec.VolumeType != "" && spec.VolumeType != string(cnstypes.CnsVolumeTypeBlock)) {
		return nil, invalidArgument("createSpecs.volumeType", "a volume is BLOCK with CnsBlockBackingDetails or FILE with CnsVsanFileShareBackingDetails")
	}
	if details.BackingDiskUrlPath != "" {
		return m.registerPath(vctx, spec, details.BackingDiskUrlPath) // intree.go
	}
	if details.BackingDiskId != "" {
		return m.registerDisk(vctx, spec, details.BackingDiskId)
	}
	sizeMB := details.CapacityInMb
	if sizeMB <= 0 {
		return nil, invalidArgument("createSpecs.backingObjectDetails.capacityInMb", "capacityInMb must be positive, got %d", sizeMB)
	}
	if spec.Name == "" {
		return nil, invalidArgument("createSpecs.name", "volume name is empty")
	}
	policyID := policyOf(spec)
	result := &cnstypes.CnsVolumeCreateResult{Name: spec.Name}
	if policyID != "" {
		if _, ok := m.policies.lookup(policyID); !ok {
			result.Fault = cnsFault("Failed to create volume %s: storage policy %s not found", spec.Name, policyID)
			return result, nil
		}
	}
	src, unlock, sf := m.snapshotSource(spec, sizeMB)
	defer unlock()
	if sf != nil {
		result.Fault = sf
		return result, nil
	}
	d, reasons := m.place(spec.Datastores, policyID, sizeMB*mib)
	if d == nil {
		result.Fault = cnsFault("Failed to create volume %s: no datastore can take it: %s", spec.Name, strings.Join(reasons, "; "))
		return result, nil
	}
	v, fault := m.makeDisk(vctx, d, spec.Name, sizeMB, spec.Profile)
	if fault != nil {
		m.inv.release(d, sizeMB*mib)
		m.inv.publish(vctx, d)
		result.Fault = &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: fmt.Sprintf("Failed to create volume %s: disk creation failed", spec.Name)}
		return result, nil
	}
	if src != nil {
		if err := fillFromSnapshot(v, src); err != nil {
			m.removeDisk(vctx, v)
			m.inv.release(d, sizeMB*mib)
			m.inv.publish(vctx, d)
			result.Fault = cnsFault("Failed to create volume %s from snapshot %s: %v", spec.Name, src.cns.SnapshotId.Id, err)
			return result, nil
		}
	}
	m.add(vctx, v, spec, policyID)
	klog.V(2).InfoS("CNS volume created", "volumeID", v.cns.VolumeId.Id, "name", spec.Name, "datastore", d.name, "sizeMB", sizeMB, "policyID", policyID)

	result.VolumeId = v.cns.VolumeId
	result.PlacementResults = []cnstypes.CnsPlacementResult{{Datastore: d.ref}}
	return result, nil
}

// place picks the first candidate (all datastores when none are given)
// that satisfies the policy and has room, and reserves the space. It says
// why each rejected candidate was rejected.
func (m *volumeManager) place(candidates []types.ManagedObjectReference, policyID string, bytes int64) (*dsModel, []string) {
	if len(candidates) == 0 {
		for _, d := range m.inv.datastores {
			candidates = append(candidates, d.ref)
		}
	}
	var reasons []string
	for _, ref := range candidates {
		d, ok := m.inv.dsByRef[ref]
		if !ok {
			reasons = append(reasons, fmt.Sprintf("datastore %s not found", ref.Value))
			continue
		}
		if good, why := m.policies.compatible(policyID, d); !good {
			reasons = append(reasons, why)
			continue
		}
		if !m.inv.reserve(d, bytes) {
			_, free := m.inv.space(d)
			reasons = append(reasons, fmt.Sprintf("Insufficient disk space on datastore '%s': %d bytes requested, %d bytes free", d.name, bytes, free))
			continue
		}
		return d, nil
	}
	return nil, reasons
}

// newDiskUUID makes a VMware-style virtual disk UUID ("6000C29x-xxxx-…").
func newDiskUUID() string {
	u := uuid.New()
	h := hex.EncodeToString(u[:])
	h = "6000C29" + h[7:]
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// diskUUIDHex is the form CNS returns and by-id links use: 32 lowercase hex.
func diskUUIDHex(u string) string {
	return strings.ToLower(strings.ReplaceAll(u, "-", ""))
}

// makeDisk creates the first-class disk through the VStorageObjectManager
// and makes its data file a sparse file of the volume's size.
func (m *volumeManager) makeDisk(vctx *simulator.Context, d *dsModel, name string, sizeMB int64, profile []types.BaseVirtualMachineProfileSpec) (*volume, types.BaseMethodFault) {
	c := vctx.For(vctx.Map.Path)
	var info types.TaskInfo
	var fault types.BaseMethodFault
	m.inv.withSim(func() { info, fault = createDisk(c, d, name, sizeMB, profile) })
	if fault != nil {
		return nil, fault
	}
	obj, ok := info.Result.(*types.VStorageObject)
	if !ok {
		return nil, &types.SystemError{Reason: fmt.Sprintf("CreateDisk_Task returned %T", info.Result)}
	}
	v := newVolume(d, obj, sizeMB)
	v.cns.VolumeId.Id = obj.Config.Id.Id
	if err := os.Truncate(v.flatFile, sizeMB*mib); err != nil {
		m.removeDisk(c, v)
		return nil, &types.SystemError{Reason: fmt.Sprintf("size data file: %v", err)}
	}
	return v, nil
}

// add fills in the CNS record of a block volume v (its disk ID as volume
// ID) and makes it a volume of the manager (record).
func (m *volumeManager) add(vctx *simulator.Context, v *volume, spec cnstypes.CnsVolumeCreateSpec, policyID string) {
	m.record(vctx, v, v.cns.VolumeId.Id, spec, policyID, string(cnstypes.CnsVolumeTypeBlock), &cnstypes.CnsBlockBackingDetails{
		CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: v.sizeMB},
		BackingDiskId:           v.cns.VolumeId.Id,
		BackingDiskPath:         v.diskPath,
	})
}

// record fills in v's CNS record (the ID, spec's name and metadata, the
// policy, the type and backing, healthy and compliant) and makes it a
// volume of the manager, in creation order, kept across restarts; the
// datastore's free space is published.
func (m *volumeManager) record(vctx *simulator.Context, v *volume, id string, spec cnstypes.CnsVolumeCreateSpec, policyID, volumeType string,
	backing cnstypes.BaseCnsBackingObjectDetails) {
	v.cns = cnstypes.CnsVolume{
		VolumeId:                     cnstypes.CnsVolumeId{Id: id},
		Name:                         spec.Name,
		VolumeType:                   volumeType,
		DatastoreUrl:                 v.ds.url,
		StoragePolicyId:              policyID,
		Metadata:                     spec.Metadata,
		BackingObjectDetails:         backing,
		ComplianceStatus:             string(pbmtypes.PbmComplianceStatusCompliant),
		DatastoreAccessibilityStatus: string(pbmtypes.PbmHealthStatusForEntityGreen),
		HealthStatus:                 string(pbmtypes.PbmHealthStatusForEntityGreen),
	}
	m.mu.Lock()
	m.seq++
	v.seq = m.seq
	m.volumes[id] = v
	m.mu.Unlock()
	m.saveVolume(id)
	m.inv.publish(vctx, v.ds)
}

// newVolume is the record of a volume backed by the first-class disk obj on
// d: its files, a disk UUID of its own, no CNS fields yet.
func newVolume(d *dsModel, obj *types.VStorageObject, sizeMB int64) *volume {
	id := obj.Config.Id.Id
	v := &volume{
		created:  time.Now(),
		fcd:      *obj,
		ds:       d,
		sizeMB:   sizeMB,
		diskUUID: newDiskUUID(),
		descFile: filepath.Join(d.dir, "fcd", id+".vmdk"),
		flatFile: filepath.Join(d.dir, "fcd", id+"-flat.vmdk"),
	}
	if b, ok := obj.Config.Backing.(*types.BaseConfigInfoDiskFileBackingInfo); ok {
		v.diskPath = b.FilePath
	}
	return v
}

// createDisk runs CreateDisk_Task in-process and waits (caller holds simMu).
func createDisk(c *simulator.Context, d *dsModel, name string, sizeMB int64, profile []types.BaseVirtualMachineProfileSpec) (types.TaskInfo, types.BaseMethodFault) {
	vsom := c.Map.VStorageObjectManager()
	body, ok := vsom.CreateDiskTask(c, &types.CreateDisk_Task{
		This: vsom.Self,
		Spec: types.VslmCreateSpec{
			Name:              name,
			KeepAfterDeleteVm: types.NewBool(true),
			CapacityInMB:      sizeMB,
			Profile:           profile,
			BackingSpec: &types.VslmCreateSpecDiskFileBackingSpec{
				VslmCreateSpecBackingSpec: types.VslmCreateSpecBackingSpec{Datastore: d.ref},
				ProvisioningType:          string(types.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
			},
		},
	}).(*vimmethods.CreateDisk_TaskBody)
	if !ok || body.Res == nil {
		return types.TaskInfo{}, &types.SystemError{Reason: "CreateDisk_Task failed to start"}
	}
	info := waitTask(c, body.Res.Returnval)
	if info.Error != nil {
		return info, info.Error.Fault
	}
	return info, nil
}
