package vcenter

import (
	"context"
	"fmt"
	"maps"
	"slices"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// What the vSphere Client's Container Volumes view shows of a volume is
// its entity metadata: for each Kubernetes cluster that uses it, the PV,
// the claim and the pods, as the cluster's driver wrote them with
// CnsUpdateVolumeMetadata. CNS keeps one entity per (kind, name,
// namespace, cluster): an update replaces the entity with the same
// identity whole (labels included) and one marked Delete removes it; the
// entities of other clusters are left alone.

// Entity kinds, as CNS names them.
const (
	EntityPV  = string(cnstypes.CnsKubernetesEntityTypePV)
	EntityPVC = string(cnstypes.CnsKubernetesEntityTypePVC)
	EntityPod = string(cnstypes.CnsKubernetesEntityTypePOD)
)

// Entity is one Kubernetes object in a volume's metadata, of this cluster.
type Entity struct {
	Kind      string // EntityPV, EntityPVC, EntityPod
	Name      string
	Namespace string // "" for a PV
	Labels    map[string]string
	// Refers is the entity this one uses: a claim's PV, a pod's claim.
	Refers *EntityRef
}

// EntityRef names an entity of this cluster.
type EntityRef struct {
	Kind, Name, Namespace string
}

// ID is the entity's identity in CNS (within one cluster).
func (e Entity) ID() EntityRef { return EntityRef{Kind: e.Kind, Name: e.Name, Namespace: e.Namespace} }

// Equal says whether CNS would hold the same for both.
func (e Entity) Equal(o Entity) bool {
	if e.ID() != o.ID() || !maps.Equal(e.Labels, o.Labels) || (e.Refers == nil) != (o.Refers == nil) {
		return false
	}
	return e.Refers == nil || *e.Refers == *o.Refers
}

// MetadataUpdate changes this cluster's entities of one volume.
type MetadataUpdate struct {
	VolumeID string
	Set      []Entity    // added, or replacing the entity of the same identity
	Delete   []EntityRef // removed
}

// metadataBatch bounds the volumes of one CnsUpdateVolumeMetadata call.
const metadataBatch = 100

// UpdateMetadata writes the updates, up to metadataBatch volumes per
// CnsUpdateVolumeMetadata call, one call after the other. failed holds the
// volumes CNS refused, each with its own error (ErrVolumeNotFound for a
// volume that is gone); err is a call's (the updates of that call and of
// those after it were not made: they are in failed too).
func (c *client) UpdateMetadata(ctx context.Context, updates []MetadataUpdate) (failed map[string]error, err error) {
	failed = map[string]error{}
	for start := 0; start < len(updates); start += metadataBatch {
		chunk := updates[start:min(start+metadataBatch, len(updates))]
		if err := c.updateMetadata(ctx, chunk, failed); err != nil {
			for _, u := range updates[start:] {
				failed[u.VolumeID] = err
			}
			return failed, err
		}
	}
	return failed, nil
}

func (c *client) updateMetadata(ctx context.Context, updates []MetadataUpdate, failed map[string]error) error {
	cc := c.containerCluster()
	specs := make([]cnstypes.CnsVolumeMetadataUpdateSpec, 0, len(updates))
	for _, u := range updates {
		md := cnstypes.CnsVolumeMetadata{ContainerCluster: cc, ContainerClusterArray: []cnstypes.CnsContainerCluster{cc}}
		for _, e := range u.Set {
			md.EntityMetadata = append(md.EntityMetadata, c.cnsEntity(e, false))
		}
		for _, r := range u.Delete {
			md.EntityMetadata = append(md.EntityMetadata, c.cnsEntity(Entity{Kind: r.Kind, Name: r.Name, Namespace: r.Namespace}, true))
		}
		specs = append(specs, cnstypes.CnsVolumeMetadataUpdateSpec{VolumeId: cnstypes.CnsVolumeId{Id: u.VolumeID}, Metadata: md})
	}
	results, err := c.runCNSBatch(ctx, opid.UpdateMeta, updates[0].VolumeID, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.UpdateVolumeMetadata(ctx, specs)
	})
	if err != nil {
		return fmt.Errorf("update the metadata of %d volumes: %w", len(updates), err)
	}
	answered := map[string]bool{}
	for _, r := range results {
		res := r.GetCnsVolumeOperationResult()
		answered[res.VolumeId.Id] = true
		if res.Fault != nil {
			failed[res.VolumeId.Id] = fmt.Errorf("update the metadata of volume %s: %w", res.VolumeId.Id, mapFault(localizedError(res.Fault), ErrVolumeNotFound))
		}
	}
	for _, u := range updates {
		if !answered[u.VolumeID] {
			failed[u.VolumeID] = fmt.Errorf("update the metadata of volume %s: CNS returned no result for it", u.VolumeID)
		}
	}
	klog.V(4).InfoS("Volume metadata updated", "volumes", len(updates), "failed", len(failed))
	return nil
}

// containerCluster is this cluster as CNS records it.
func (c *client) containerCluster() cnstypes.CnsContainerCluster {
	return cnstypes.CnsContainerCluster{
		ClusterType:         string(cnstypes.CnsClusterTypeKubernetes),
		ClusterId:           c.opts.ClusterID,
		VSphereUser:         c.opts.User,
		ClusterFlavor:       string(cnstypes.CnsClusterFlavorVanilla),
		ClusterDistribution: c.opts.ClusterDistribution,
	}
}

// cnsEntity is e as CNS takes it, in this cluster.
func (c *client) cnsEntity(e Entity, del bool) *cnstypes.CnsKubernetesEntityMetadata {
	out := &cnstypes.CnsKubernetesEntityMetadata{
		CnsEntityMetadata: cnstypes.CnsEntityMetadata{EntityName: e.Name, ClusterID: c.opts.ClusterID, Delete: del},
		EntityType:        e.Kind,
		Namespace:         e.Namespace,
	}
	for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
		out.Labels = append(out.Labels, types.KeyValue{Key: k, Value: e.Labels[k]})
	}
	if r := e.Refers; r != nil {
		out.ReferredEntity = []cnstypes.CnsKubernetesEntityReference{{
			EntityType: r.Kind, EntityName: r.Name, Namespace: r.Namespace, ClusterID: c.opts.ClusterID,
		}}
	}
	return out
}

// entitiesOf reads this cluster's entities from a volume's metadata.
func (c *client) entitiesOf(md cnstypes.CnsVolumeMetadata) []Entity {
	var out []Entity
	for _, em := range md.EntityMetadata {
		k, ok := em.(*cnstypes.CnsKubernetesEntityMetadata)
		if !ok || k.ClusterID != c.opts.ClusterID {
			continue
		}
		e := Entity{Kind: k.EntityType, Name: k.EntityName, Namespace: k.Namespace}
		if len(k.Labels) > 0 {
			e.Labels = make(map[string]string, len(k.Labels))
			for _, l := range k.Labels {
				e.Labels[l.Key] = l.Value
			}
		}
		for _, r := range k.ReferredEntity {
			if r.ClusterID == "" || r.ClusterID == c.opts.ClusterID {
				e.Refers = &EntityRef{Kind: r.EntityType, Name: r.EntityName, Namespace: r.Namespace}
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// VolumesByID returns those of the volumes that exist (of any cluster),
// lookupBatch IDs per query.
func (c *client) VolumesByID(ctx context.Context, ids []string) ([]Volume, error) {
	var out []Volume
	for start := 0; start < len(ids); start += lookupBatch {
		chunk := ids[start:min(start+lookupBatch, len(ids))]
		f := cnstypes.CnsQueryFilter{}
		for _, id := range chunk {
			f.VolumeIds = append(f.VolumeIds, cnstypes.CnsVolumeId{Id: id})
		}
		res, err := c.query(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("query %d volumes: %w", len(chunk), err)
		}
		out = append(out, c.toVolumes(res.Volumes)...)
	}
	return out, nil
}
