package sim

import (
	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsReconfigVolumePolicy changes the storage policy of each spec's volume
// in place, as vCenter's CNS does: the volume stays on its datastore, so a
// policy that datastore does not satisfy is refused (a CnsFault in that
// volume's result that names the datastore and the policy); otherwise the
// record's StoragePolicyId and the first-class disk's profile change.
// Per-spec failures are in the results; the task succeeds.
func (m *volumeManager) CnsReconfigVolumePolicy(ctx *simulator.Context, req *cnstypes.CnsReconfigVolumePolicy) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsReconfigVolumePolicy", run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.VolumePolicyReconfigSpecs) == 0 {
			return nil, invalidArgument("volumePolicyReconfigSpecs", "no policy reconfiguration specs")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.VolumePolicyReconfigSpecs {
			res := opResult(spec.VolumeId.Id, m.reconfigPolicy(spec))
			results = append(results, &res)
		}
		return batch(results...), nil
	}})
	return &methods.CnsReconfigVolumePolicyBody{Res: &cnstypes.CnsReconfigVolumePolicyResponse{Returnval: ref}}
}

func profileID(profiles []types.BaseVirtualMachineProfileSpec) string {
	for _, p := range profiles {
		if d, ok := p.(*types.VirtualMachineDefinedProfileSpec); ok && d.ProfileId != "" {
			return d.ProfileId
		}
	}
	return ""
}

func (m *volumeManager) reconfigPolicy(spec cnstypes.CnsVolumePolicyReconfigSpec) *types.LocalizedMethodFault {
	id := spec.VolumeId.Id
	policyID := profileID(spec.Profile)
	if policyID == "" {
		return localized(invalidArgument("volumePolicyReconfigSpecs.profile", "no storage policy given for volume %s", id),
			"no storage policy given for volume "+id)
	}
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		return volumeNotFound(id)
	}
	pol, ok := m.policies.lookup(policyID)
	if !ok {
		return cnsFault("Failed to reconfigure the policy of volume %s: storage policy %s not found", id, policyID)
	}
	if good, why := m.policies.compatible(policyID, v.ds); !good {
		return cnsFault("Failed to reconfigure the policy of volume %s: the datastore %s of the volume is not compatible with storage policy %s: %s",
			id, v.ds.name, pol.name, why)
	}
	m.mu.Lock()
	if cur, ok := m.volumes[id]; ok {
		cur.cns.StoragePolicyId = policyID // a field of the value copy queries hand out
		cur.cns.ComplianceStatus = string(pbmtypes.PbmComplianceStatusCompliant)
	}
	m.mu.Unlock()
	m.saveVolume(id)
	klog.V(2).InfoS("CNS volume policy changed", "volumeID", id, "policy", pol.name, "datastore", v.ds.name)
	return nil
}
