package vcentertest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// inTreeDisk is a VMDK of the in-tree plugin: its size and, once
// registered, its volume's ID.
type inTreeDisk struct {
	size     int64
	volumeID string
}

// AddInTreeDisk puts a VMDK of the in-tree plugin at path, of size bytes,
// on a datastore of the fake (by name).
func (f *Fake) AddInTreeDisk(p vcenter.DiskPath, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inTree == nil {
		f.inTree = map[string]*inTreeDisk{}
	}
	f.inTree[p.String()] = &inTreeDisk{size: size}
}

// CreateInTreeDisk makes the VMDK (AddInTreeDisk); one already there is
// success. An unknown datastore: ErrVolumeNotFound.
func (f *Fake) CreateInTreeDisk(_ context.Context, p vcenter.DiskPath, size int64, format string) error {
	f.mu.Lock()
	f.called("CreateInTreeDisk")
	known := slices.ContainsFunc(f.Stores, func(d vcenter.Datastore) bool { return d.Name == p.Datastore })
	_, exists := f.inTree[p.String()]
	f.mu.Unlock()
	switch {
	case !slices.Contains(vcenter.DiskFormats(), format):
		return fmt.Errorf("%w: disk format %q", vcenter.ErrInvalidArgument, format)
	case !known:
		return fmt.Errorf("%w: no datastore %q", vcenter.ErrVolumeNotFound, p.Datastore)
	case !exists:
		f.AddInTreeDisk(p, size)
	}
	return nil
}

// RegisterInTreeDisk makes the VMDK a volume named spec.Name; one already
// registered (by path) is returned as it is.
func (f *Fake) RegisterInTreeDisk(_ context.Context, spec vcenter.InTreeSpec) (vcenter.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("RegisterInTreeDisk")
	d, ok := f.inTree[spec.Path.String()]
	if !ok {
		return vcenter.Volume{}, fmt.Errorf("%w: no disk %s", vcenter.ErrVolumeNotFound, spec.Path)
	}
	if v, ok := f.volumes[d.volumeID]; ok {
		return *v, nil
	}
	i := slices.IndexFunc(f.Stores, func(d vcenter.Datastore) bool { return d.Name == spec.Path.Datastore })
	if i < 0 {
		return vcenter.Volume{}, fmt.Errorf("%w: no datastore %q", vcenter.ErrVolumeNotFound, spec.Path.Datastore)
	}
	if f.volumes == nil {
		f.volumes = map[string]*vcenter.Volume{}
	}
	f.seq++
	v := &vcenter.Volume{
		ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", f.seq), Name: spec.Name, CapacityBytes: d.size,
		DatastoreURL: f.Stores[i].URL, PolicyID: spec.PolicyID, PVName: spec.PVName, PVCName: spec.PVCName,
		PVCNamespace: spec.PVCNamespace, Health: "green", CreateTime: time.Now(),
	}
	d.volumeID = v.ID
	f.volumes[v.ID] = v
	f.order = append(f.order, v.ID)
	return *v, nil
}
