package sim

import (
	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsUpdateVolumeMetadata merges entity metadata into each volume: an
// entity (type, namespace, name, cluster) replaces the one with the same
// identity, Delete removes it. A non-empty ContainerCluster replaces the
// volume's.
func (m *volumeManager) CnsUpdateVolumeMetadata(ctx *simulator.Context, req *cnstypes.CnsUpdateVolumeMetadata) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsUpdateVolumeMetadata", run: func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.UpdateSpecs) == 0 {
			return nil, invalidArgument("updateSpecs", "no update specs")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.UpdateSpecs {
			fault := m.updateMetadata(spec)
			if fault == nil {
				m.saveVolume(spec.VolumeId.Id)
			}
			res := opResult(spec.VolumeId.Id, fault)
			results = append(results, &res)
		}
		return batch(results...), nil
	}})
	return &methods.CnsUpdateVolumeBody{Res: &cnstypes.CnsUpdateVolumeMetadataResponse{Returnval: ref}}
}

type entityKey struct{ kind, namespace, name, cluster string }

func keyOf(e cnstypes.BaseCnsEntityMetadata) entityKey {
	base := e.GetCnsEntityMetadata()
	k := entityKey{name: base.EntityName, cluster: base.ClusterID}
	if ke, ok := e.(*cnstypes.CnsKubernetesEntityMetadata); ok {
		k.kind, k.namespace = ke.EntityType, ke.Namespace
	}
	return k
}

func (m *volumeManager) updateMetadata(spec cnstypes.CnsVolumeMetadataUpdateSpec) *types.LocalizedMethodFault {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.volumes[spec.VolumeId.Id]
	if !ok {
		return volumeNotFound(spec.VolumeId.Id)
	}
	meta := v.cns.Metadata // copy-on-write: build new slices
	entities := append([]cnstypes.BaseCnsEntityMetadata(nil), meta.EntityMetadata...)
	for _, e := range spec.Metadata.EntityMetadata {
		k := keyOf(e)
		kept := entities[:0:0]
		for _, old := range entities {
			if keyOf(old) != k {
				kept = append(kept, old)
			}
		}
		if !e.GetCnsEntityMetadata().Delete {
			kept = append(kept, e)
		}
		entities = kept
	}
	meta.EntityMetadata = entities
	if spec.Metadata.ContainerCluster.ClusterId != "" {
		meta.ContainerCluster = spec.Metadata.ContainerCluster
	}
	if len(spec.Metadata.ContainerClusterArray) != 0 {
		meta.ContainerClusterArray = spec.Metadata.ContainerClusterArray
	}
	v.cns.Metadata = meta
	return nil
}
