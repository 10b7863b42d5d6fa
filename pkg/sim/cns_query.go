package sim

import (
	"slices"
	"sort"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// CnsQueryVolume returns the matching volumes in creation order, one page
// per call when a cursor is given: Cursor.Offset/Limit are honored, the
// returned Cursor.Offset is the next offset and TotalRecords the number of
// matches. Without a cursor (or with Limit <= 0) every match from the
// offset on comes back.
func (m *volumeManager) CnsQueryVolume(_ *simulator.Context, req *cnstypes.CnsQueryVolume) soap.HasFault {
	body := new(queryVolumeBody)
	var filter cnstypes.CnsQueryFilter
	if req.Filter != nil {
		filter = *req.Filter.GetCnsQueryFilter()
	}
	matches := m.query(filter)
	total := int64(len(matches))
	var offset, limit int64
	if c := filter.Cursor; c != nil {
		offset, limit = c.Offset, c.Limit
	}
	if offset < 0 {
		body.Fault_ = simulator.Fault("cursor offset is negative", &types.InvalidArgument{InvalidProperty: "filter.cursor.offset"})
		return body
	}
	offset = min(offset, total)
	end := total
	if limit > 0 {
		end = min(total, offset+limit)
	}
	body.Res = &queryResponse{Returnval: queryResult{
		Volumes: typed(matches[offset:end]),
		Cursor:  cnstypes.CnsCursor{Offset: end, Limit: limit, TotalRecords: total},
	}}
	return body
}

// CnsQueryAllVolume returns every matching volume (no paging).
func (m *volumeManager) CnsQueryAllVolume(_ *simulator.Context, req *cnstypes.CnsQueryAllVolume) soap.HasFault {
	matches := m.query(req.Filter)
	total := int64(len(matches))
	return &queryAllVolumeBody{Res: &queryResponse{Returnval: queryResult{
		Volumes: typed(matches),
		Cursor:  cnstypes.CnsCursor{Offset: total, TotalRecords: total},
	}}}
}

// The query responses as vCenter writes them. govmomi's CnsVolume has no
// typeattr on backingObjectDetails, so the simulator would write it
// without its xsi:type, and a client would read a file volume's
// CnsVsanFileShareBackingDetails (and a block volume's
// CnsBlockBackingDetails) as the bare base type. These types are the same
// XML with the type written; clients decode them with govmomi's types.
type (
	queryVolumeBody struct {
		Res    *queryResponse `xml:"urn:vsan CnsQueryVolumeResponse,omitempty"`
		Fault_ *soap.Fault    `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"` //nolint:revive // as govmomi names it
	}
	queryAllVolumeBody struct {
		Res    *queryResponse `xml:"urn:vsan CnsQueryAllVolumeResponse,omitempty"`
		Fault_ *soap.Fault    `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"` //nolint:revive // as govmomi names it
	}
	queryResponse struct {
		Returnval queryResult `xml:"returnval"`
	}
	queryResult struct {
		types.DynamicData
		Volumes []typedVolume      `xml:"volumes,omitempty"`
		Cursor  cnstypes.CnsCursor `xml:"cursor"`
	}
	// typedVolume is cnstypes.CnsVolume (convertible to and from it) with
	// typeattr on backingObjectDetails.
	typedVolume struct {
		types.DynamicData
		VolumeId                     cnstypes.CnsVolumeId                 `xml:"volumeId"`               //nolint:revive // as govmomi names it
		DatastoreUrl                 string                               `xml:"datastoreUrl,omitempty"` //nolint:revive // as govmomi names it
		Name                         string                               `xml:"name,omitempty"`
		VolumeType                   string                               `xml:"volumeType,omitempty"`
		StoragePolicyId              string                               `xml:"storagePolicyId,omitempty"` //nolint:revive // as govmomi names it
		Metadata                     cnstypes.CnsVolumeMetadata           `xml:"metadata,omitempty"`
		BackingObjectDetails         cnstypes.BaseCnsBackingObjectDetails `xml:"backingObjectDetails,omitempty,typeattr"`
		ComplianceStatus             string                               `xml:"complianceStatus,omitempty"`
		DatastoreAccessibilityStatus string                               `xml:"datastoreAccessibilityStatus,omitempty"`
		HealthStatus                 string                               `xml:"healthStatus,omitempty"`
		ChangedBlockTracking         cnstypes.CnsVolumeCBTStatus          `xml:"changedBlockTracking,omitempty"`
	}
)

func (b *queryVolumeBody) Fault() *soap.Fault    { return b.Fault_ }
func (b *queryAllVolumeBody) Fault() *soap.Fault { return b.Fault_ }

func typed(vols []cnstypes.CnsVolume) []typedVolume {
	out := make([]typedVolume, len(vols))
	for i, v := range vols {
		out[i] = typedVolume(v)
	}
	return out
}

// query copies the matching records, in creation order, under the lock.
func (m *volumeManager) query(f cnstypes.CnsQueryFilter) []cnstypes.CnsVolume {
	m.mu.Lock()
	defer m.mu.Unlock()
	var vols []*volume
	for _, v := range m.volumes {
		if matches(f, v) {
			vols = append(vols, v)
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].seq < vols[j].seq })
	out := make([]cnstypes.CnsVolume, len(vols))
	for i, v := range vols {
		out[i] = v.cns
	}
	return out
}

func matches(f cnstypes.CnsQueryFilter, v *volume) bool {
	c := v.cns
	switch {
	case len(f.VolumeIds) != 0 && !slices.ContainsFunc(f.VolumeIds, func(id cnstypes.CnsVolumeId) bool { return id.Id == c.VolumeId.Id }):
		return false
	case len(f.Names) != 0 && !slices.Contains(f.Names, c.Name):
		return false
	case len(f.ContainerClusterIds) != 0 && !inClusters(f.ContainerClusterIds, c.Metadata):
		return false
	case len(f.Datastores) != 0 && !slices.Contains(f.Datastores, v.ds.ref):
		return false
	case f.StoragePolicyId != "" && f.StoragePolicyId != c.StoragePolicyId:
		return false
	case f.ComplianceStatus != "" && f.ComplianceStatus != c.ComplianceStatus:
		return false
	case f.HealthStatus != "" && f.HealthStatus != c.HealthStatus:
		return false
	case len(f.Labels) != 0 && !hasLabel(c, f.Labels):
		return false
	}
	return true
}

// inClusters says whether a volume belongs to one of the clusters: its
// container cluster or any of its container cluster array (a volume
// several clusters use, each through a static PV).
func inClusters(ids []string, md cnstypes.CnsVolumeMetadata) bool {
	if slices.Contains(ids, md.ContainerCluster.ClusterId) {
		return true
	}
	return slices.ContainsFunc(md.ContainerClusterArray, func(cc cnstypes.CnsContainerCluster) bool { return slices.Contains(ids, cc.ClusterId) })
}

func hasLabel(c cnstypes.CnsVolume, labels []types.KeyValue) bool {
	for _, e := range c.Metadata.EntityMetadata {
		for _, l := range e.GetCnsEntityMetadata().Labels {
			if slices.Contains(labels, l) {
				return true
			}
		}
	}
	return false
}

// CnsQueryVolumeInfo returns the first-class disk behind each volume.
func (m *volumeManager) CnsQueryVolumeInfo(ctx *simulator.Context, req *cnstypes.CnsQueryVolumeInfo) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsQueryVolumeInfo", run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		vsom := vctx.Map.VStorageObjectManager()
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, id := range req.VolumeIds {
			v, ok := m.snapshot(id.Id)
			if !ok {
				res := opResult(id.Id, volumeNotFound(id.Id))
				results = append(results, &res)
				continue
			}
			if v.share != nil {
				res := opResult(id.Id, notBlock(id.Id, "volume info (a first-class disk)"))
				results = append(results, &res)
				continue
			}
			var obj types.VStorageObject
			found := false
			vctx.WithLock(vsom, func() {
				if o, ok := vsom.Catalog()[v.ds.ref][types.ID{Id: id.Id}]; ok {
					obj, found = o.VStorageObject, true
				}
			})
			if !found {
				res := opResult(id.Id, volumeNotFound(id.Id))
				results = append(results, &res)
				continue
			}
			results = append(results, &cnstypes.CnsQueryVolumeInfoResult{
				CnsVolumeOperationResult: opResult(id.Id, nil),
				VolumeInfo:               &cnstypes.CnsBlockVolumeInfo{VStorageObject: obj},
			})
		}
		return batch(results...), nil
	}})
	return &methods.CnsQueryVolumeInfoBody{Res: &cnstypes.CnsQueryVolumeInfoResponse{Returnval: ref}}
}
