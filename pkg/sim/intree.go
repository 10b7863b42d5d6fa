package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vmdk"
	"k8s.io/klog/v2"
)

// Disks of the in-tree vSphere plugin (kubernetes.io/vsphere-volume): plain
// VMDKs, not first-class disks, that the plugin made with
// VirtualDiskManager under "[datastore] kubevols/". A test makes one with
// AddInTreeDisk (or the driver with CreateVirtualDisk_Task, which govmomi's
// simulator serves); CnsCreateVolume with BackingDiskUrlPath registers it
// (registerPath), as vCenter's CNS does for migrated in-tree volumes: the
// disk becomes a first-class disk and a CNS volume where it is, its files
// and data untouched.

// inTreeFolder is the folder the in-tree plugin put its disks in.
const inTreeFolder = "kubevols"

// AddInTreeDisk makes a VMDK as the in-tree plugin did, at
// "[datastore] kubevols/NAME.vmdk": a descriptor and a sparse data file of
// sizeMB. It returns the datastore path (what an in-tree PV's volumePath
// holds). The disk is no CNS volume until registered.
func (s *Sim) AddInTreeDisk(datastore, name string, sizeMB int64) (string, error) {
	d, ok := s.inv.dsByName[datastore]
	switch {
	case !ok:
		return "", fmt.Errorf("no datastore %q", datastore)
	case name == "" || strings.ContainsAny(name, "/[]"):
		return "", fmt.Errorf("bad disk name %q", name)
	case sizeMB <= 0:
		return "", fmt.Errorf("size %d MB: must be positive", sizeMB)
	}
	file := path.Join(inTreeFolder, name+".vmdk")
	desc, flat := inTreeFiles(d, file)
	if err := os.MkdirAll(filepath.Dir(desc), 0o750); err != nil {
		return "", err
	}
	if _, err := os.Stat(desc); err == nil {
		return "", fmt.Errorf("disk [%s] %s exists", d.name, file)
	}
	if err := writeDescriptor(desc, flat, sizeMB); err != nil {
		return "", err
	}
	f, err := os.Create(flat)
	if err != nil {
		return "", err
	}
	err = f.Truncate(sizeMB * mib)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("[%s] %s", d.name, file), nil
}

// DatastoreFile is the local file that holds the data of the disk at a
// datastore path ("[ds] dir/x.vmdk"): its -flat.vmdk extent. Tests read and
// write disks through it.
func (s *Sim) DatastoreFile(dsPath string) (string, error) {
	ds, file, ok := splitDatastorePath(dsPath)
	if !ok {
		return "", fmt.Errorf("not a datastore path: %q", dsPath)
	}
	d, ok := s.inv.dsByName[ds]
	if !ok {
		return "", fmt.Errorf("no datastore %q", ds)
	}
	_, flat := inTreeFiles(d, file)
	return flat, nil
}

func splitDatastorePath(p string) (ds, file string, ok bool) {
	p = strings.TrimSpace(p)
	end := strings.Index(p, "]")
	if !strings.HasPrefix(p, "[") || end < 0 {
		return "", "", false
	}
	ds, file = strings.TrimSpace(p[1:end]), strings.TrimSpace(p[end+1:])
	return ds, file, ds != "" && strings.HasSuffix(file, ".vmdk") && !strings.Contains(file, "..")
}

// inTreeFiles are the local descriptor and data file of file (a path in
// datastore d, "kubevols/x.vmdk").
func inTreeFiles(d *dsModel, file string) (desc, flat string) {
	desc = filepath.Join(d.dir, filepath.FromSlash(file))
	return desc, strings.TrimSuffix(desc, ".vmdk") + "-flat.vmdk"
}

// volumeFiles are a kept volume's descriptor and data file: a first-class
// disk's under fcd/ by its ID, a registered in-tree disk's where its
// datastore path says.
func volumeFiles(d *dsModel, id, diskPath string) (desc, flat string) {
	if _, file, ok := splitDatastorePath(diskPath); ok && !strings.HasPrefix(file, "fcd/") {
		return inTreeFiles(d, file)
	}
	return filepath.Join(d.dir, "fcd", id+".vmdk"), filepath.Join(d.dir, "fcd", id+"-flat.vmdk")
}

func writeDescriptor(desc, flat string, sizeMB int64) error {
	f, err := os.Create(desc)
	if err != nil {
		return err
	}
	d := vmdk.NewDescriptor(vmdk.Extent{Info: filepath.Base(flat), Size: sizeMB * mib / vmdk.SectorSize})
	err = d.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// diskCapacity reads a VMDK's size: its descriptor's extents, or its data
// file's length when that is larger (or the descriptor says nothing).
func diskCapacity(desc, flat string) (int64, error) {
	f, err := os.Open(desc)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size int64
	if d, err := vmdk.ParseDescriptor(f); err == nil {
		size = d.Capacity()
	}
	if st, err := os.Stat(flat); err == nil {
		size = max(size, st.Size())
	}
	return size, nil
}

// registerPath makes the VMDK a disk URL names a CNS volume, as vCenter's
// CNS does for CnsCreateVolume with BackingDiskUrlPath
// ("https://<vc>/folder/<file>?dcPath=<datacenter>&dsName=<datastore>"): the
// disk becomes a first-class disk of a new ID, in place; the volume's size
// is the disk's. A disk that already is a CNS volume gives
// CnsAlreadyRegisteredFault naming it; a file that is not there, a
// NotFound fault; both in the result, as registerDisk.
func (m *volumeManager) registerPath(vctx *simulator.Context, spec cnstypes.CnsVolumeCreateSpec, raw string) (*cnstypes.CnsVolumeCreateResult, types.BaseMethodFault) {
	if spec.Name == "" {
		return nil, invalidArgument("createSpecs.name", "volume name is empty")
	}
	const field = "createSpecs.backingObjectDetails.backingDiskUrlPath"
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || !strings.HasPrefix(u.Path, "/folder/") {
		return nil, invalidArgument(field, "%q is not https://<vCenter>/folder/<path>?dcPath=<datacenter>&dsName=<datastore>", raw)
	}
	file := strings.TrimPrefix(u.Path, "/folder/")
	dsName, dcPath := u.Query().Get("dsName"), u.Query().Get("dcPath")
	if dsName == "" || dcPath == "" || !strings.HasSuffix(file, ".vmdk") || strings.Contains(file, "..") {
		return nil, invalidArgument(field, "%q: a .vmdk path, dcPath and dsName are required", raw)
	}
	result := &cnstypes.CnsVolumeCreateResult{Name: spec.Name}
	notFound := func(format string, args ...any) (*cnstypes.CnsVolumeCreateResult, types.BaseMethodFault) {
		msg := fmt.Sprintf(format, args...)
		result.Fault = localized(&types.NotFound{}, msg)
		return result, nil
	}
	if strings.TrimPrefix(dcPath, "/") != m.inv.dcName {
		return notFound("Failed to register disk %s: datacenter %q not found", raw, dcPath)
	}
	d, ok := m.inv.dsByName[dsName]
	if !ok {
		return notFound("Failed to register disk %s: datastore %q not found", raw, dsName)
	}
	diskPath := fmt.Sprintf("[%s] %s", d.name, file)
	defer m.volLocks.lock("path:" + diskPath)()
	if id := m.volumeAtPath(diskPath); id != "" {
		msg := fmt.Sprintf("Failed to register disk %s: it already is CNS volume %s", diskPath, id)
		result.VolumeId = cnstypes.CnsVolumeId{Id: id}
		result.Fault = localized(&cnstypes.CnsAlreadyRegisteredFault{CnsFault: cnstypes.CnsFault{Reason: msg}, VolumeId: result.VolumeId}, msg)
		return result, nil
	}
	desc, flat := inTreeFiles(d, file)
	size, err := diskCapacity(desc, flat)
	if errors.Is(err, fs.ErrNotExist) {
		return notFound("Failed to register disk: File %s was not found", diskPath)
	}
	if err != nil {
		result.Fault = cnsFault("Failed to register disk %s: %v", diskPath, err)
		return result, nil
	}
	sizeMB := max(1, (size+mib-1)/mib)
	policyID := policyOf(spec)
	if good, why := m.policies.compatible(policyID, d); !good {
		result.Fault = cnsFault("Failed to register disk %s: %s", diskPath, why)
		return result, nil
	}
	if !m.inv.reserve(d, sizeMB*mib) {
		_, free := m.inv.space(d)
		result.Fault = cnsFault("Failed to register disk %s: Insufficient disk space on datastore '%s': %d bytes requested, %d bytes free", diskPath, d.name, sizeMB*mib, free)
		return result, nil
	}
	if st, err := os.Stat(flat); err != nil || st.Size() < sizeMB*mib {
		if err := os.Truncate(flat, sizeMB*mib); err != nil {
			m.inv.release(d, sizeMB*mib)
			result.Fault = cnsFault("Failed to register disk %s: data file: %v", diskPath, err)
			return result, nil
		}
	}
	id := uuid.NewString()
	now := time.Now()
	obj := types.VStorageObject{Config: types.VStorageObjectConfigInfo{
		BaseConfigInfo: types.BaseConfigInfo{
			Id: types.ID{Id: id}, Name: spec.Name, CreateTime: now, KeepAfterDeleteVm: types.NewBool(true),
			Backing: &types.BaseConfigInfoDiskFileBackingInfo{
				BaseConfigInfoFileBackingInfo: types.BaseConfigInfoFileBackingInfo{
					BaseConfigInfoBackingInfo: types.BaseConfigInfoBackingInfo{Datastore: d.ref}, FilePath: diskPath,
				},
				ProvisioningType: string(types.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
			},
		},
		CapacityInMB: sizeMB,
	}}
	v := &volume{
		created: now, fcd: obj, ds: d, sizeMB: sizeMB, diskUUID: newDiskUUID(),
		diskPath: diskPath, descFile: desc, flatFile: flat,
	}
	v.cns.VolumeId.Id = id
	m.catalogPut(vctx, d, obj)
	m.add(vctx, v, spec, policyID)
	klog.V(2).InfoS("VMDK registered as a CNS volume", "volumeID", id, "name", spec.Name, "path", diskPath, "sizeMB", sizeMB)
	result.VolumeId = v.cns.VolumeId
	result.PlacementResults = []cnstypes.CnsPlacementResult{{Datastore: d.ref}}
	return result, nil
}

// volumeAtPath is the ID of the block volume whose disk is at diskPath,
// "" when none.
func (m *volumeManager) volumeAtPath(diskPath string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, v := range m.volumes {
		if v.share == nil && v.diskPath == diskPath {
			return id
		}
	}
	return ""
}
