// Package vcentertest is an in-memory vcenter.Client for the driver's fast
// unit tests: handler logic (validation, placement decisions, idempotency,
// codes) without a vCenter, embedded or real. It keeps volumes, snapshots,
// attachments and node VMs in maps and answers as the real client's
// contract says (vcenter.go); it does not model tasks, latency or faults:
// those are the embedded vCenter's (pkg/sim) and are tested against it.
package vcentertest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Fake is the in-memory client. Fill Pols, Stores, VMs (and
// FileSupport) before use; the zero value has none.
type Fake struct {
	mu sync.Mutex

	Pols []vcenter.Policy
	// Stores are the datastores; Compatible lists, per policy ID, the
	// IDs of the datastores compatible with it.
	Stores     []vcenter.Datastore
	Compatible map[string][]string
	VMs        []vcenter.NodeVM
	// FileSupport is FileShareSupport's answer (datastore ID → "" or why
	// not); nil: no datastore can hold file shares.
	FileSupport map[string]string
	// Release is what About answers (NewFake: vCenter 8.0.3).
	Release vcenter.Release

	volumes   map[string]*vcenter.Volume
	order     []string
	snapshots map[string][]vcenter.Snapshot
	inTree    map[string]*inTreeDisk // in-tree VMDKs by path (intree.go)
	seq       int
	// Calls counts calls by method name; LastSpec is the last CreateVolume's.
	Calls    map[string]int
	LastSpec vcenter.CreateSpec
}

var _ vcenter.Client = (*Fake)(nil)

// NewFake is a Fake with one policy "Gold" compatible with two shared
// datastores (ds-big with 1 TiB free, ds-small with 100 GiB) and one
// datastore compatible with nothing, and three node VMs.
func NewFake() *Fake {
	const gib = int64(1) << 30
	f := &Fake{
		Pols: []vcenter.Policy{{ID: "policy-gold", Name: "Gold"}},
		Stores: []vcenter.Datastore{
			{ID: "ds-big", Name: "big", URL: "ds:///vmfs/volumes/big/", CapacityBytes: 2048 * gib, FreeBytes: 1024 * gib, Reachable: true},
			{ID: "ds-small", Name: "small", URL: "ds:///vmfs/volumes/small/", CapacityBytes: 200 * gib, FreeBytes: 100 * gib, Reachable: true},
			{ID: "ds-other", Name: "other", URL: "ds:///vmfs/volumes/other/", CapacityBytes: 4096 * gib, FreeBytes: 4096 * gib, Reachable: true},
		},
		Compatible: map[string][]string{"policy-gold": {"ds-big", "ds-small"}},
		Release:    vcenter.Release{Version: "8.0.3", Build: "24022515", FullName: "VMware vCenter Server 8.0.3 build-24022515"},
	}
	for i := 1; i <= 3; i++ {
		f.VMs = append(f.VMs, vcenter.NodeVM{UUID: fmt.Sprintf("42000000-0000-0000-0000-00000000000%d", i), Name: fmt.Sprintf("node-%d", i), ID: fmt.Sprintf("vm-%d", i)})
	}
	return f
}

func (f *Fake) called(method string) {
	if f.Calls == nil {
		f.Calls = map[string]int{}
	}
	f.Calls[method]++
	if f.volumes == nil {
		f.volumes = map[string]*vcenter.Volume{}
		f.snapshots = map[string][]vcenter.Snapshot{}
	}
}

// Healthy is always nil.
func (f *Fake) Healthy(context.Context) error { return nil }

// About is Release (a supported vCenter unless a test sets another).
func (f *Fake) About() vcenter.Release {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Release
}

// Policies lists the policies.
func (f *Fake) Policies(context.Context) ([]vcenter.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("Policies")
	return slices.Clone(f.Pols), nil
}

// PolicyByName finds a policy; ErrPolicyNotFound naming the ones there are.
func (f *Fake) PolicyByName(_ context.Context, name string) (vcenter.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("PolicyByName")
	var names []string
	for _, p := range f.Pols {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return vcenter.Policy{}, fmt.Errorf("%w: %q (there are %s)", vcenter.ErrPolicyNotFound, name, strings.Join(names, ", "))
}

// Datastores annotates the datastores for the policy, with the free space
// the fake's volumes left.
func (f *Fake) Datastores(_ context.Context, policyID string) ([]vcenter.Datastore, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("Datastores")
	out := slices.Clone(f.Stores)
	for i := range out {
		if policyID != "" {
			out[i].Compatible = slices.Contains(f.Compatible[policyID], out[i].ID)
			if !out[i].Compatible {
				out[i].Incompatible = "the policy's rules do not match it"
			}
		}
	}
	return out, nil
}

// FileShareSupport answers FileSupport.
func (f *Fake) FileShareSupport(context.Context, bool) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("FileShareSupport")
	out := map[string]string{}
	for _, ds := range f.Stores {
		why, ok := f.FileSupport[ds.ID]
		if !ok {
			why = "not a vSAN datastore"
		}
		out[ds.ID] = why
	}
	return out, nil
}

// CreateVolume makes the volume on the first candidate with room; a name
// already made is that volume (Existing), as after settling.
func (f *Fake) CreateVolume(_ context.Context, spec vcenter.CreateSpec) (vcenter.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("CreateVolume")
	f.LastSpec = spec
	if spec.Name == "" || spec.CapacityBytes <= 0 || len(spec.DatastoreIDs) == 0 {
		return vcenter.Volume{}, fmt.Errorf("%w: spec %+v", vcenter.ErrInvalidArgument, spec)
	}
	for _, id := range f.order {
		if v := f.volumes[id]; v.Name == spec.Name {
			out := *v
			out.Existing = true
			return out, nil
		}
	}
	for _, dsID := range spec.DatastoreIDs {
		i := slices.IndexFunc(f.Stores, func(d vcenter.Datastore) bool { return d.ID == dsID })
		if i < 0 {
			return vcenter.Volume{}, fmt.Errorf("%w: unknown datastore %s", vcenter.ErrInvalidArgument, dsID)
		}
		if f.Stores[i].FreeBytes < spec.CapacityBytes {
			continue
		}
		f.Stores[i].FreeBytes -= spec.CapacityBytes
		f.seq++
		v := &vcenter.Volume{
			ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", f.seq), Name: spec.Name, CapacityBytes: spec.CapacityBytes,
			DatastoreURL: f.Stores[i].URL, PolicyID: spec.PolicyID, PVCName: spec.PVCName, PVCNamespace: spec.PVCNamespace,
			PVName: spec.PVName, Health: "green", CreateTime: time.Now(),
		}
		if spec.File != nil {
			v.ID = "file:" + v.ID
			v.File = true
			v.AccessPoints = map[string]string{vcenter.AccessPointNFSv41: "10.0.0.1:/vsanfs/" + spec.Name, vcenter.AccessPointNFSv3: "10.0.0.1:/vsanfs/" + spec.Name}
		}
		f.volumes[v.ID] = v
		f.order = append(f.order, v.ID)
		return *v, nil
	}
	return vcenter.Volume{}, fmt.Errorf("%w: no candidate has %d bytes free", vcenter.ErrInsufficientSpace, spec.CapacityBytes)
}

// DeleteVolume deletes; ErrVolumeInUse while attached, ErrHasSnapshots
// with snapshots, ErrVolumeNotFound when gone.
func (f *Fake) DeleteVolume(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("DeleteVolume")
	v, ok := f.volumes[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", vcenter.ErrVolumeNotFound, id)
	case len(v.Attachments) > 0:
		return fmt.Errorf("%w: %s", vcenter.ErrVolumeInUse, id)
	case len(f.snapshots[id]) > 0:
		return fmt.Errorf("%w: %s", vcenter.ErrHasSnapshots, id)
	}
	for i := range f.Stores {
		if f.Stores[i].URL == v.DatastoreURL {
			f.Stores[i].FreeBytes += v.CapacityBytes
		}
	}
	delete(f.volumes, id)
	f.order = slices.DeleteFunc(f.order, func(x string) bool { return x == id })
	return nil
}

// volume is the volume with that ID, or ErrVolumeNotFound; f.mu is held.
func (f *Fake) volume(id string) (*vcenter.Volume, error) {
	v, ok := f.volumes[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", vcenter.ErrVolumeNotFound, id)
	}
	return v, nil
}

// Volume returns one volume.
func (f *Fake) Volume(_ context.Context, id string) (vcenter.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("Volume")
	v, err := f.volume(id)
	if err != nil {
		return vcenter.Volume{}, err
	}
	return *v, nil
}

// FindVolumeByName returns the volume of that name.
func (f *Fake) FindVolumeByName(_ context.Context, name string) (vcenter.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("FindVolumeByName")
	for _, id := range f.order {
		if v := f.volumes[id]; v.Name == name {
			return *v, nil
		}
	}
	return vcenter.Volume{}, fmt.Errorf("%w: no volume named %q", vcenter.ErrVolumeNotFound, name)
}

// ListVolumes pages in creation order.
func (f *Fake) ListVolumes(_ context.Context, offset, limit int64) ([]vcenter.Volume, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("ListVolumes")
	n := int64(len(f.order))
	if offset >= n {
		return nil, 0, nil
	}
	end := n
	if limit > 0 {
		end = min(n, offset+limit)
	}
	var page []vcenter.Volume
	for _, id := range f.order[offset:end] {
		page = append(page, *f.volumes[id])
	}
	next := end
	if end >= n {
		next = 0
	}
	return page, next, nil
}

func (f *Fake) vm(uuid string) (vcenter.NodeVM, bool) {
	for _, vm := range f.VMs {
		if strings.EqualFold(vm.UUID, uuid) {
			return vm, true
		}
	}
	return vcenter.NodeVM{}, false
}

// AttachVolume attaches to one VM at a time.
func (f *Fake) AttachVolume(_ context.Context, id, nodeUUID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("AttachVolume")
	vm, ok := f.vm(nodeUUID)
	if !ok {
		return "", fmt.Errorf("%w: %s", vcenter.ErrNodeNotFound, nodeUUID)
	}
	v, err := f.volume(id)
	if err != nil {
		return "", err
	}
	for _, a := range v.Attachments {
		if a.NodeUUID == vm.UUID {
			return a.DiskUUID, nil
		}
		return "", fmt.Errorf("%w: attached to %s", vcenter.ErrVolumeInUse, a.VMName)
	}
	disk := fmt.Sprintf("6000c29%025x", len(f.order)*1000+len(v.Name))
	v.Attachments = []vcenter.Attachment{{NodeUUID: vm.UUID, VMName: vm.Name, DiskUUID: disk}}
	return disk, nil
}

// DetachVolume detaches; not attached or VM gone: success.
func (f *Fake) DetachVolume(_ context.Context, id, nodeUUID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("DetachVolume")
	v, err := f.volume(id)
	if err != nil {
		return err
	}
	v.Attachments = slices.DeleteFunc(v.Attachments, func(a vcenter.Attachment) bool { return strings.EqualFold(a.NodeUUID, nodeUUID) })
	return nil
}

// ChangeVolumePolicy sets the policy when the volume's datastore is compatible.
func (f *Fake) ChangeVolumePolicy(_ context.Context, id string, p vcenter.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("ChangeVolumePolicy")
	v, err := f.volume(id)
	if err != nil {
		return err
	}
	for _, ds := range f.Stores {
		if ds.URL == v.DatastoreURL && !slices.Contains(f.Compatible[p.ID], ds.ID) {
			return fmt.Errorf("%w: datastore %s", vcenter.ErrPolicyIncompatible, ds.Name)
		}
	}
	v.PolicyID = p.ID
	return nil
}

// RegisterDisk is not modeled: ErrVolumeNotFound.
func (f *Fake) RegisterDisk(_ context.Context, diskID, _ string) (vcenter.Volume, error) {
	return vcenter.Volume{}, fmt.Errorf("%w: first-class disk %s (the fake has none)", vcenter.ErrVolumeNotFound, diskID)
}

// ExtendVolume grows the volume.
func (f *Fake) ExtendVolume(_ context.Context, id string, capacity int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("ExtendVolume")
	v, err := f.volume(id)
	if err != nil {
		return err
	}
	v.CapacityBytes = max(v.CapacityBytes, capacity)
	return nil
}

// CreateSnapshot takes one snapshot per description.
func (f *Fake) CreateSnapshot(_ context.Context, id, desc string) (vcenter.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("CreateSnapshot")
	v, err := f.volume(id)
	if err != nil {
		return vcenter.Snapshot{}, err
	}
	for _, s := range f.snapshots[id] {
		if s.Description == desc {
			return s, nil
		}
	}
	f.seq++
	s := vcenter.Snapshot{ID: fmt.Sprintf("snap-%d", f.seq), VolumeID: id, Description: desc, CreateTime: time.Now(), SizeBytes: v.CapacityBytes}
	f.snapshots[id] = append(f.snapshots[id], s)
	return s, nil
}

// DeleteSnapshot deletes one snapshot.
func (f *Fake) DeleteSnapshot(_ context.Context, id, snapID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("DeleteSnapshot")
	list := f.snapshots[id]
	i := slices.IndexFunc(list, func(s vcenter.Snapshot) bool { return s.ID == snapID })
	if i < 0 {
		return fmt.Errorf("%w: %s of %s", vcenter.ErrSnapshotNotFound, snapID, id)
	}
	f.snapshots[id] = slices.Delete(list, i, i+1)
	return nil
}

// Snapshots pages through the selected snapshots in ID order, as
// ListVolumes does (limit <= 0: all from offset).
func (f *Fake) Snapshots(_ context.Context, flt vcenter.SnapshotFilter, offset, limit int64) ([]vcenter.Snapshot, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("Snapshots")
	var out []vcenter.Snapshot
	for vol, list := range f.snapshots {
		if flt.VolumeID != "" && vol != flt.VolumeID {
			continue
		}
		for _, s := range list {
			if flt.SnapshotID == "" || s.ID == flt.SnapshotID {
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	n := int64(len(out))
	if offset < 0 {
		return nil, 0, fmt.Errorf("%w: offset %d", vcenter.ErrInvalidArgument, offset)
	}
	if offset >= n {
		return nil, 0, nil
	}
	end := n
	if limit > 0 {
		end = min(n, offset+limit)
	}
	next := end
	if end >= n {
		next = 0
	}
	return out[offset:end], next, nil
}

// NodeVM finds a node VM.
func (f *Fake) NodeVM(_ context.Context, uuid string) (vcenter.NodeVM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("NodeVM")
	vm, ok := f.vm(uuid)
	if !ok {
		return vcenter.NodeVM{}, fmt.Errorf("%w: %s", vcenter.ErrNodeNotFound, uuid)
	}
	return vm, nil
}

// SetCredentials does nothing.
func (f *Fake) SetCredentials(string, string) {}

// Close does nothing.
func (f *Fake) Close(context.Context) error { return nil }

// CallCount is the number of calls made.
func (f *Fake) CallCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.Calls {
		n += c
	}
	return n
}

// VolumeCount is the number of volumes.
func (f *Fake) VolumeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.volumes)
}

// DropCloneLeftovers deletes the volume's snapshots described as the
// transient snapshot of the clone name (of any clone for ""); it returns how
// many others the volume has.
func (f *Fake) DropCloneLeftovers(_ context.Context, id, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("DropCloneLeftovers")
	prefix := vcenter.CloneSnapshotDescription("")
	kept := f.snapshots[id][:0]
	for _, s := range f.snapshots[id] {
		if (name == "" && strings.HasPrefix(s.Description, prefix)) || s.Description == vcenter.CloneSnapshotDescription(name) {
			continue
		}
		kept = append(kept, s)
	}
	f.snapshots[id] = kept
	return len(kept)
}

// UpdateMetadata applies the updates to the volumes' entities as CNS
// does: same identity replaced, Delete removed.
func (f *Fake) UpdateMetadata(_ context.Context, updates []vcenter.MetadataUpdate) (map[string]error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("UpdateMetadata")
	failed := map[string]error{}
	for _, u := range updates {
		v, err := f.volume(u.VolumeID)
		if err != nil {
			failed[u.VolumeID] = err
			continue
		}
		drop := map[vcenter.EntityRef]bool{}
		for _, e := range u.Set {
			drop[e.ID()] = true
		}
		for _, r := range u.Delete {
			drop[r] = true
		}
		kept := slices.DeleteFunc(slices.Clone(v.Entities), func(e vcenter.Entity) bool { return drop[e.ID()] })
		v.Entities = append(kept, u.Set...)
	}
	return failed, nil
}

// VolumesByID returns those of the volumes that exist.
func (f *Fake) VolumesByID(_ context.Context, ids []string) ([]vcenter.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.called("VolumesByID")
	var out []vcenter.Volume
	for _, id := range ids {
		if v, err := f.volume(id); err == nil {
			out = append(out, *v)
		}
	}
	return out, nil
}
