package sim

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	cnstypes "github.com/vmware/govmomi/cns/types"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// SeedVolumes makes n CNS volumes of the container cluster clusterID at
// once, named prefix-0..n-1, of policyName (compatible datastores in turn),
// without tasks or SOAP, as if CNS had made them long ago: for measuring
// the driver with 10,000 volumes, where making them one call at a time
// would measure the embedded vCenter instead. Each is a first-class disk
// with its (sparse) files, in the catalog, and kept in the state dir, as a
// volume made by CnsCreateVolume is.
func (s *Sim) SeedVolumes(n int, prefix, clusterID, policyName string, sizeMB int64) ([]string, error) {
	pol, ok := s.policies.byName[policyName]
	if !ok {
		return nil, fmt.Errorf("no storage policy %q", policyName)
	}
	var dss []*dsModel
	for _, d := range s.inv.datastores {
		if good, _ := s.policies.compatible(pol.id, d); good {
			dss = append(dss, d)
		}
	}
	if len(dss) == 0 {
		return nil, fmt.Errorf("no datastore satisfies %s", policyName)
	}
	vctx := s.model.Service.Context.For(vim25.Path)
	cc := cnstypes.CnsContainerCluster{ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: clusterID,
		VSphereUser: s.Username(), ClusterFlavor: string(cnstypes.CnsClusterFlavorVanilla)}
	ids := make([]string, 0, n)
	for i := range n {
		// Round robin over the datastores that still have room.
		var d *dsModel
		for k := range dss {
			if c := dss[(i+k)%len(dss)]; s.inv.reserve(c, sizeMB*mib) {
				d = c
				break
			}
		}
		if d == nil {
			return ids, fmt.Errorf("the %s datastores are full after %d volumes", policyName, i)
		}
		id, err := s.seedVolume(vctx, d, fmt.Sprintf("%s-%d", prefix, i), pol.id, cc, sizeMB)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	for _, d := range dss {
		s.inv.publish(vctx, d)
	}
	return ids, nil
}

// seedVolume makes one CNS volume of cc on d, whose space the caller has
// reserved, as SeedVolumes does: a first-class disk with its (sparse)
// files, in the catalog and the manager, kept in the state dir.
func (s *Sim) seedVolume(vctx *simulator.Context, d *dsModel, name, policyID string, cc cnstypes.CnsContainerCluster, sizeMB int64) (string, error) {
	m := s.cns
	id := uuid.NewString()
	v := &volume{
		created: time.Now(), ds: d, sizeMB: sizeMB, diskUUID: newDiskUUID(),
		diskPath: fmt.Sprintf("[%s] fcd/%s.vmdk", d.name, id),
		descFile: filepath.Join(d.dir, "fcd", id+".vmdk"),
		flatFile: filepath.Join(d.dir, "fcd", id+"-flat.vmdk"),
	}
	if err := os.MkdirAll(filepath.Dir(v.flatFile), 0o750); err != nil {
		return "", err
	}
	if err := os.WriteFile(v.descFile, []byte("# Disk DescriptorFile (vsphere-sim)\n"), 0o640); err != nil {
		return "", err
	}
	f, err := os.Create(v.flatFile)
	if err != nil {
		return "", err
	}
	err = f.Truncate(sizeMB * mib)
	_ = f.Close()
	if err != nil {
		return "", err
	}
	v.fcd = types.VStorageObject{Config: types.VStorageObjectConfigInfo{
		BaseConfigInfo: types.BaseConfigInfo{
			Id: types.ID{Id: id}, Name: name, CreateTime: v.created, KeepAfterDeleteVm: types.NewBool(true),
			Backing: &types.BaseConfigInfoDiskFileBackingInfo{
				BaseConfigInfoFileBackingInfo: types.BaseConfigInfoFileBackingInfo{
					BaseConfigInfoBackingInfo: types.BaseConfigInfoBackingInfo{Datastore: d.ref}, FilePath: v.diskPath,
				},
				ProvisioningType: string(types.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
			},
		},
		CapacityInMB: sizeMB,
	}}
	v.cns = cnstypes.CnsVolume{
		VolumeId: cnstypes.CnsVolumeId{Id: id}, Name: name,
		VolumeType: string(cnstypes.CnsVolumeTypeBlock), DatastoreUrl: d.url, StoragePolicyId: policyID,
		Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cc, ContainerClusterArray: []cnstypes.CnsContainerCluster{cc}},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB},
			BackingDiskId:           id, BackingDiskPath: v.diskPath,
		},
		ComplianceStatus:             string(pbmtypes.PbmComplianceStatusCompliant),
		DatastoreAccessibilityStatus: string(pbmtypes.PbmHealthStatusForEntityGreen),
		HealthStatus:                 string(pbmtypes.PbmHealthStatusForEntityGreen),
	}
	m.catalogPut(vctx, d, v.fcd)
	m.mu.Lock()
	m.seq++
	v.seq = m.seq
	m.volumes[id] = v
	m.mu.Unlock()
	m.saveVolume(id)
	return id, nil
}

// Requests is the number of SOAP requests the vCenter has answered (or
// failed on purpose): the round trips of every client, counted where they
// arrive.
func (s *Sim) Requests() int64 { return s.lab.requests.Load() }
