package sim

import (
	"fmt"
	"slices"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsUpdateVolumeMetadata merges entity metadata into each volume, as CNS
// does: an entity is identified by (type, namespace, name, cluster); one
// with the identity of a held entity replaces it whole (labels and
// references included), one marked Delete removes it, and the entities
// of other clusters stay. The update's container cluster joins the
// volume's container cluster array when it is not there yet (a volume
// that several clusters use keeps each one's entities); the volume's own
// container cluster (its creator's) is kept. Each spec must name its
// container cluster, and each entity its type and name.
func (m *volumeManager) CnsUpdateVolumeMetadata(ctx *simulator.Context, req *cnstypes.CnsUpdateVolumeMetadata) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsUpdateVolumeMetadata", run: func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.UpdateSpecs) == 0 {
			return nil, invalidArgument("updateSpecs", "no update specs")
		}
		for i, spec := range req.UpdateSpecs {
			if f := checkMetadataSpec(spec); f != nil {
				return nil, invalidArgument(fmt.Sprintf("updateSpecs[%d].%s", i, f.InvalidProperty), "%s", f.FaultMessage[0].Message)
			}
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

// checkMetadataSpec refuses a spec without its container cluster or with
// an entity that has no type or name.
func checkMetadataSpec(spec cnstypes.CnsVolumeMetadataUpdateSpec) *types.InvalidArgument {
	if spec.Metadata.ContainerCluster.ClusterId == "" {
		return invalidArgument("metadata.containerCluster.clusterId", "the update names no container cluster")
	}
	for j, e := range spec.Metadata.EntityMetadata {
		base := e.GetCnsEntityMetadata()
		ke, ok := e.(*cnstypes.CnsKubernetesEntityMetadata)
		switch {
		case base.EntityName == "":
			return invalidArgument(fmt.Sprintf("metadata.entityMetadata[%d].entityName", j), "an entity has no name")
		case ok && !slices.Contains([]string{string(cnstypes.CnsKubernetesEntityTypePV), string(cnstypes.CnsKubernetesEntityTypePVC), string(cnstypes.CnsKubernetesEntityTypePOD)}, ke.EntityType):
			return invalidArgument(fmt.Sprintf("metadata.entityMetadata[%d].entityType", j), "unknown entity type %q", ke.EntityType)
		}
	}
	return nil
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
	cc := spec.Metadata.ContainerCluster
	if meta.ContainerCluster.ClusterId == "" {
		meta.ContainerCluster = cc
	}
	clusters := append([]cnstypes.CnsContainerCluster(nil), meta.ContainerClusterArray...)
	for _, add := range append([]cnstypes.CnsContainerCluster{cc}, spec.Metadata.ContainerClusterArray...) {
		if add.ClusterId != "" && !slices.ContainsFunc(clusters, func(c cnstypes.CnsContainerCluster) bool { return c.ClusterId == add.ClusterId }) {
			clusters = append(clusters, add)
		}
	}
	meta.ContainerClusterArray = clusters
	v.cns.Metadata = meta
	return nil
}
