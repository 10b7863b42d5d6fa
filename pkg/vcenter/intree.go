package vcenter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// Volumes of the in-tree vSphere plugin (kubernetes.io/vsphere-volume):
// their PVs name a VMDK by its datastore path ("[datastore] kubevols/x.vmdk"),
// and Kubernetes' CSI migration hands that path to the driver as the volume
// ID. Such a disk becomes a CNS volume by registration (CnsCreateVolume with
// BackingDiskUrlPath: the disk stays where it is, CNS makes it a first-class
// disk), under a name derived from the path (InTreeVolumeName), so that any
// controller finds it again by name: the mapping lives in vCenter, not in a
// process or a Kubernetes object.

// DiskPath is a VMDK's datastore path: "[Datastore] folder/name.vmdk".
type DiskPath struct {
	Datastore string // the datastore's name
	File      string // the path inside the datastore, "kubevols/name.vmdk"
}

// String is the path in its normal form, "[ds] file".
func (p DiskPath) String() string { return "[" + p.Datastore + "] " + p.File }

// ParseDiskPath reads a datastore path as the in-tree plugin wrote it. It
// is lenient where the plugin's paths varied: spaces around the parts, and
// a datastore named with its datastore cluster ("[DatastoreCluster/ds1]",
// whose last element is the datastore). ok is false for anything that is
// not a path of a .vmdk file in a datastore.
func ParseDiskPath(s string) (DiskPath, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") {
		return DiskPath{}, false
	}
	end := strings.Index(s, "]")
	if end < 0 {
		return DiskPath{}, false
	}
	ds := strings.TrimSpace(s[1:end])
	if i := strings.LastIndex(ds, "/"); i >= 0 {
		ds = strings.TrimSpace(ds[i+1:])
	}
	file := strings.TrimLeft(strings.TrimSpace(s[end+1:]), "/")
	if ds == "" || !strings.HasSuffix(strings.ToLower(file), ".vmdk") || len(file) == len(".vmdk") {
		return DiskPath{}, false
	}
	for _, e := range strings.Split(file, "/") {
		if e == ".." || e == "." || e == "" {
			return DiskPath{}, false
		}
	}
	return DiskPath{Datastore: ds, File: file}, true
}

// InTreeVolumeName is the CNS volume name of the disk at p once registered:
// "intree-" and the first 32 hex digits of the SHA-256 of p's normal form.
// Every controller derives the same name from the same path.
func InTreeVolumeName(p DiskPath) string {
	sum := sha256.Sum256([]byte(p.String()))
	return "intree-" + hex.EncodeToString(sum[:])[:32]
}

// DiskFormats lists the in-tree plugin's diskformat values, which
// CreateInTreeDisk takes.
func DiskFormats() []string { return []string{"thin", "zeroedthick", "eagerzeroedthick"} }

// diskType is the VirtualDiskManager disk type of an in-tree disk format.
func diskType(format string) (types.VirtualDiskType, bool) {
	switch format {
	case "thin":
		return types.VirtualDiskTypeThin, true
	case "zeroedthick":
		return types.VirtualDiskTypePreallocated, true
	case "eagerzeroedthick":
		return types.VirtualDiskTypeEagerZeroedThick, true
	}
	return "", false
}

// InTreeSpec asks for the registration of an in-tree VMDK as a CNS volume.
type InTreeSpec struct {
	Path     DiskPath
	Name     string // the CNS volume's name; InTreeVolumeName(Path)
	PolicyID string // may be empty
	// What the provisioner passed, for a volume it asked for; may be empty.
	PVCName, PVCNamespace, PVName string
}

// CreateInTreeDisk makes a VMDK at p (its folder first) of capacityBytes,
// of the in-tree disk format (DiskFormats), as the in-tree plugin did
// (FileManager.MakeDirectory, VirtualDiskManager.CreateVirtualDisk_Task).
// A file already there is success: an earlier attempt made it.
func (c *client) CreateInTreeDisk(ctx context.Context, p DiskPath, capacityBytes int64, format string) error {
	dt, ok := diskType(format)
	if !ok {
		return fmt.Errorf("%w: disk format %q", ErrInvalidArgument, format)
	}
	dc, _, err := c.datacenterOfDatastore(ctx, p.Datastore)
	if err != nil {
		return err
	}
	dir := DiskPath{Datastore: p.Datastore, File: path.Dir(p.File)}.String()
	if err := object.NewFileManager(c.conn.vim).MakeDirectory(ctx, dir, dc, true); err != nil && !hasFault(err, "FileAlreadyExists") {
		return fmt.Errorf("make folder %s: %w", dir, mapFault(err, nil))
	}
	spec := &types.FileBackedVirtualDiskSpec{
		VirtualDiskSpec: types.VirtualDiskSpec{DiskType: string(dt), AdapterType: string(types.VirtualDiskAdapterTypeLsiLogic)},
		CapacityKb:      (capacityBytes + 1023) / 1024,
	}
	vdm := object.NewVirtualDiskManager(c.conn.vim)
	_, _, err = c.runTask(ctx, opid.Create, p.String(), nil, func(ctx context.Context) (*object.Task, error) {
		return vdm.CreateVirtualDisk(ctx, p.String(), dc, spec)
	})
	if err != nil && !hasFault(err, "FileAlreadyExists") {
		return fmt.Errorf("create disk %s: %w", p, mapFault(err, nil))
	}
	klog.InfoS("In-tree style disk made", "path", p.String(), "diskFormat", format, "capacityBytes", capacityBytes, "existed", err != nil)
	return nil
}

// RegisterInTreeDisk makes the VMDK at spec.Path a CNS volume of this
// cluster named spec.Name: CnsCreateVolume whose backing is the disk's URL
// ("https://<vCenter>/folder/<file>?dcPath=<datacenter>&dsName=<datastore>"),
// with this cluster's container-cluster record and, when given, the policy
// and the PV and claim. CNS takes the disk where it is (no copy, no move).
// A disk that already is a CNS volume (registered by another controller,
// or by the upstream driver under another name): that volume. No such
// disk: ErrVolumeNotFound.
func (c *client) RegisterInTreeDisk(ctx context.Context, spec InTreeSpec) (Volume, error) {
	if spec.Name == "" || spec.Path.Datastore == "" {
		return Volume{}, fmt.Errorf("%w: disk path and volume name are required", ErrInvalidArgument)
	}
	_, dcPath, err := c.datacenterOfDatastore(ctx, spec.Path.Datastore)
	if err != nil {
		return Volume{}, err
	}
	diskURL := (&url.URL{
		Scheme:   "https",
		Host:     c.opts.Host,
		Path:     "/folder/" + spec.Path.File,
		RawQuery: "dcPath=" + url.QueryEscape(dcPath) + "&dsName=" + url.QueryEscape(spec.Path.Datastore),
	}).String()
	cs := cnstypes.CnsVolumeCreateSpec{
		Name:                 spec.Name,
		VolumeType:           string(cnstypes.CnsVolumeTypeBlock),
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{BackingDiskUrlPath: diskURL},
		Metadata:             c.volumeMetadata(CreateSpec{PVCName: spec.PVCName, PVCNamespace: spec.PVCNamespace, PVName: spec.PVName}),
	}
	if spec.PolicyID != "" {
		cs.Profile = []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: spec.PolicyID}}
	}
	r, err := c.runCNS(ctx, opid.Create, spec.Name, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{cs})
	})
	id := ""
	switch {
	case errors.Is(err, errAlreadyRegistered):
		id = alreadyRegisteredID(r)
		if id == "" {
			return Volume{}, fmt.Errorf("register disk %s with CNS: it already is a CNS volume, but CNS did not say which: %w", spec.Path, err)
		}
		klog.InfoS("In-tree disk already is a CNS volume", "path", spec.Path.String(), "volumeID", id)
	case errors.Is(err, ErrVolumeNotFound):
		return Volume{}, fmt.Errorf("%w: no disk %s", ErrVolumeNotFound, spec.Path)
	case err != nil:
		return Volume{}, fmt.Errorf("register disk %s with CNS: %w", spec.Path, err)
	default:
		if cr, ok := r.(*cnstypes.CnsVolumeCreateResult); ok {
			id = cr.VolumeId.Id
		}
		if id == "" {
			return Volume{}, fmt.Errorf("register disk %s with CNS: the task returned no volume ID", spec.Path)
		}
		c.noteName(spec.Name, id)
		klog.InfoS("In-tree disk registered as a CNS volume", "path", spec.Path.String(), "volumeID", id, "name", spec.Name)
	}
	return c.Volume(ctx, id)
}

// alreadyRegisteredID is the volume ID a CnsAlreadyRegisteredFault names.
func alreadyRegisteredID(r cnstypes.BaseCnsVolumeOperationResult) string {
	if r == nil {
		return ""
	}
	res := r.GetCnsVolumeOperationResult()
	if res.Fault != nil {
		if f, ok := res.Fault.Fault.(*cnstypes.CnsAlreadyRegisteredFault); ok && f.VolumeId.Id != "" {
			return f.VolumeId.Id
		}
	}
	return res.VolumeId.Id
}

// hasFault says whether err is a vCenter fault of that type (or one that
// extends it).
func hasFault(err error, name string) bool {
	f, _ := faultOf(err)
	if f == nil {
		return false
	}
	for _, n := range faultTypeChain(f) {
		if n == name {
			return true
		}
	}
	return false
}

// datacenterOfDatastore finds the datacenter that holds the datastore of
// that name among the configured datacenters, and its inventory path (as
// a disk URL's dcPath names it). An unknown datastore: ErrVolumeNotFound,
// since a path on it names no disk this cluster can see.
func (c *client) datacenterOfDatastore(ctx context.Context, name string) (*object.Datacenter, string, error) {
	var dsRef *types.ManagedObjectReference
	inv := c.inv.Load()
	for _, ref := range inv.datastoreRefs() {
		if ds, ok := inv.datastore(ref.Value); ok && ds.name == name {
			dsRef = &ref
			break
		}
	}
	if dsRef == nil {
		return nil, "", fmt.Errorf("%w: no datastore %q in the configured datacenters", ErrVolumeNotFound, name)
	}
	vim := c.conn.vim
	v, err := view.NewManager(vim).CreateContainerView(ctx, vim.ServiceContent.RootFolder, []string{"Datacenter"}, true)
	if err != nil {
		return nil, "", mapFault(err, nil)
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	var dcs []mo.Datacenter
	if err := v.Retrieve(ctx, []string{"Datacenter"}, []string{"name", "datastore"}, &dcs); err != nil {
		return nil, "", mapFault(err, nil)
	}
	for _, dc := range dcs {
		for _, ref := range dc.Datastore {
			if ref != *dsRef {
				continue
			}
			p, err := find.InventoryPath(ctx, vim, dc.Self)
			if err != nil {
				return nil, "", fmt.Errorf("inventory path of datacenter %s: %w", dc.Name, mapFault(err, nil))
			}
			d := object.NewDatacenter(vim, dc.Self)
			d.InventoryPath = p
			return d, strings.TrimPrefix(p, "/"), nil
		}
	}
	return nil, "", fmt.Errorf("%w: datastore %q is in no datacenter", ErrVolumeNotFound, name)
}
