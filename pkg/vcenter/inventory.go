package vcenter

import (
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// The properties the watch follows, per managed object type.
var (
	vmProps   = []string{"name", "config.uuid", "config.template", "runtime.host", "config.hardware.device"}
	dsProps   = []string{"summary.name", "summary.url", "summary.capacity", "summary.freeSpace", "summary.accessible", "host"}
	hostProps = []string{"name"}
)

// inventory is the cached picture of the node VMs, datastores and hosts of
// the configured datacenters, kept fresh by the watch. Readers take
// snapshots under the read lock; only the watch writes.
type inventory struct {
	mu         sync.RWMutex
	vms        map[types.ManagedObjectReference]*vmState
	byUUID     map[string]types.ManagedObjectReference
	datastores map[types.ManagedObjectReference]*dsState
	hosts      map[types.ManagedObjectReference]string
}

type vmState struct {
	ref      types.ManagedObjectReference
	name     string
	uuid     string // normalized BIOS UUID
	template bool
	host     types.ManagedObjectReference
	disks    map[int32]diskState // device key → the FCD on it
}

// diskState is a VirtualDisk device that backs a first-class disk.
type diskState struct {
	volumeID string
	diskUUID string // 32 lowercase hex digits
}

type dsState struct {
	ref        types.ManagedObjectReference
	name, url  string
	capacity   int64
	free       int64
	accessible bool
	mounts     map[types.ManagedObjectReference]bool // host → mounted and accessible
}

func newInventory() *inventory {
	return &inventory{
		vms:        map[types.ManagedObjectReference]*vmState{},
		byUUID:     map[string]types.ManagedObjectReference{},
		datastores: map[types.ManagedObjectReference]*dsState{},
		hosts:      map[types.ManagedObjectReference]string{},
	}
}

// apply applies one object update of the watch. It returns false when a
// change was too fine-grained to apply (a nested array element property):
// the caller then re-reads the object's properties.
func (inv *inventory) apply(u types.ObjectUpdate) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if u.Kind == types.ObjectUpdateKindLeave {
		inv.remove(u.Obj)
		return true
	}
	ok := true
	switch u.Obj.Type {
	case "VirtualMachine":
		vm := inv.vms[u.Obj]
		if vm == nil {
			vm = &vmState{ref: u.Obj, disks: map[int32]diskState{}}
			inv.vms[u.Obj] = vm
		}
		for _, c := range u.ChangeSet {
			ok = inv.applyVM(vm, c) && ok
		}
	case "Datastore":
		ds := inv.datastores[u.Obj]
		if ds == nil {
			ds = &dsState{ref: u.Obj, mounts: map[types.ManagedObjectReference]bool{}}
			inv.datastores[u.Obj] = ds
		}
		for _, c := range u.ChangeSet {
			ok = applyDatastore(ds, c) && ok
		}
	case "HostSystem":
		for _, c := range u.ChangeSet {
			if c.Name == "name" {
				s, _ := c.Val.(string)
				inv.hosts[u.Obj] = s
			}
		}
		if _, seen := inv.hosts[u.Obj]; !seen {
			inv.hosts[u.Obj] = u.Obj.Value
		}
	}
	return ok
}

func (inv *inventory) remove(ref types.ManagedObjectReference) {
	if vm := inv.vms[ref]; vm != nil && inv.byUUID[vm.uuid] == ref {
		delete(inv.byUUID, vm.uuid)
	}
	delete(inv.vms, ref)
	delete(inv.datastores, ref)
	delete(inv.hosts, ref)
}

func (inv *inventory) applyVM(vm *vmState, c types.PropertyChange) bool {
	removed := c.Op == types.PropertyChangeOpRemove || c.Op == types.PropertyChangeOpIndirectRemove
	var f mo.Field
	if !f.FromString(c.Name) {
		return false
	}
	switch f.Path {
	case "name":
		vm.name, _ = c.Val.(string)
	case "config.uuid":
		if inv.byUUID[vm.uuid] == vm.ref {
			delete(inv.byUUID, vm.uuid)
		}
		s, _ := c.Val.(string)
		vm.uuid = normalizeVMUUID(s)
		if vm.uuid != "" {
			inv.byUUID[vm.uuid] = vm.ref
		}
	case "config.template":
		vm.template, _ = c.Val.(bool)
	case "runtime.host":
		vm.host, _ = c.Val.(types.ManagedObjectReference)
	case "config.hardware.device":
		return applyDevices(vm, f, c, removed)
	default:
		return false
	}
	return true
}

// applyDevices handles both a whole device list and one keyed element
// (config.hardware.device[2001]); a change below an element is refused.
func applyDevices(vm *vmState, f mo.Field, c types.PropertyChange, removed bool) bool {
	if f.Key == nil {
		vm.disks = map[int32]diskState{}
		if removed {
			return true
		}
		var devs []types.BaseVirtualDevice
		switch v := c.Val.(type) {
		case types.ArrayOfVirtualDevice:
			devs = v.VirtualDevice
		case []types.BaseVirtualDevice:
			devs = v
		}
		for _, d := range devs {
			if disk, ok := fcdDisk(d); ok {
				vm.disks[d.GetVirtualDevice().Key] = disk
			}
		}
		return true
	}
	key, isInt := f.Key.(int32)
	if !isInt || f.Item != "" {
		return false
	}
	delete(vm.disks, key)
	if !removed {
		if d, ok := c.Val.(types.BaseVirtualDevice); ok {
			if disk, ok := fcdDisk(d); ok {
				dropProvisional(vm, disk.volumeID)
				vm.disks[key] = disk
			}
		}
	}
	return true
}

// dropProvisional removes what recordAttach noted for a volume once the
// real device is known.
func dropProvisional(vm *vmState, volumeID string) {
	for k, d := range vm.disks {
		if k < 0 && d.volumeID == volumeID {
			delete(vm.disks, k)
		}
	}
}

// fcdDisk says which first-class disk a device is, when it is one: by the
// disk's vDiskId, or else by an "fcd/<id>.vmdk" backing file name.
func fcdDisk(d types.BaseVirtualDevice) (diskState, bool) {
	disk, ok := d.(*types.VirtualDisk)
	if !ok {
		return diskState{}, false
	}
	var id string
	if disk.VDiskId != nil {
		id = disk.VDiskId.Id
	}
	var file string
	if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		file = b.GetVirtualDeviceFileBackingInfo().FileName
	}
	if id == "" && strings.Contains(file, "fcd/") {
		id = strings.TrimSuffix(path.Base(file), ".vmdk")
	}
	if id == "" {
		return diskState{}, false
	}
	return diskState{volumeID: id, diskUUID: normalizeDiskUUID(backingUUID(disk.Backing))}, true
}

// backingUUID reads the Uuid field that most disk backings have.
func backingUUID(b types.BaseVirtualDeviceBackingInfo) string {
	v := reflect.ValueOf(b)
	for v.IsValid() && v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if !v.IsValid() || v.Kind() != reflect.Struct {
		return ""
	}
	if f := v.FieldByName("Uuid"); f.IsValid() && f.Kind() == reflect.String {
		return f.String()
	}
	return ""
}

func applyDatastore(ds *dsState, c types.PropertyChange) bool {
	removed := c.Op == types.PropertyChangeOpRemove || c.Op == types.PropertyChangeOpIndirectRemove
	var f mo.Field
	if !f.FromString(c.Name) {
		return false
	}
	switch f.Path {
	case "summary":
		if s, ok := c.Val.(types.DatastoreSummary); ok {
			ds.name, ds.url, ds.capacity, ds.free, ds.accessible = s.Name, s.Url, s.Capacity, s.FreeSpace, s.Accessible
		}
	case "summary.name":
		ds.name, _ = c.Val.(string)
	case "summary.url":
		ds.url, _ = c.Val.(string)
	case "summary.capacity":
		ds.capacity, _ = c.Val.(int64)
	case "summary.freeSpace":
		ds.free, _ = c.Val.(int64)
	case "summary.accessible":
		ds.accessible, _ = c.Val.(bool)
	case "host":
		return applyMounts(ds, f, c, removed)
	default:
		return false
	}
	return true
}

func applyMounts(ds *dsState, f mo.Field, c types.PropertyChange, removed bool) bool {
	if f.Key == nil {
		ds.mounts = map[types.ManagedObjectReference]bool{}
		if removed {
			return true
		}
		var mounts []types.DatastoreHostMount
		switch v := c.Val.(type) {
		case types.ArrayOfDatastoreHostMount:
			mounts = v.DatastoreHostMount
		case []types.DatastoreHostMount:
			mounts = v
		}
		for _, m := range mounts {
			ds.mounts[m.Key] = mountUsable(m.MountInfo)
		}
		return true
	}
	key, isString := f.Key.(string)
	if !isString || f.Item != "" {
		return false
	}
	ref := types.ManagedObjectReference{Type: "HostSystem", Value: key}
	delete(ds.mounts, ref)
	if !removed {
		if m, ok := c.Val.(types.DatastoreHostMount); ok {
			ds.mounts[m.Key] = mountUsable(m.MountInfo)
		}
	}
	return true
}

func mountUsable(m types.HostMountInfo) bool {
	mounted := m.Mounted == nil || *m.Mounted
	accessible := m.Accessible == nil || *m.Accessible
	return mounted && accessible
}

// nodeVM returns the non-template VM with that normalized BIOS UUID.
func (inv *inventory) nodeVM(uuid string) (NodeVM, types.ManagedObjectReference, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	ref, ok := inv.byUUID[uuid]
	if !ok {
		return NodeVM{}, ref, false
	}
	vm := inv.vms[ref]
	if vm == nil || vm.template {
		return NodeVM{}, ref, false
	}
	return NodeVM{UUID: vm.uuid, Name: vm.name, ID: ref.Value, Host: inv.hosts[vm.host]}, ref, true
}

// attachments lists the node VMs that have the volume's disk.
func (inv *inventory) attachments(volumeID string) []Attachment {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.attachmentsLocked(volumeID)
}

func (inv *inventory) attachmentsLocked(volumeID string) []Attachment {
	var out []Attachment
	for _, vm := range inv.vms {
		for _, d := range vm.disks {
			if d.volumeID == volumeID {
				out = append(out, Attachment{NodeUUID: vm.uuid, VMName: vm.name, DiskUUID: d.diskUUID})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeUUID < out[j].NodeUUID })
	return out
}

// attachmentsOf maps each of the volumes to its attachments, in one pass.
func (inv *inventory) attachmentsOf(volumeIDs map[string]bool) map[string][]Attachment {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := map[string][]Attachment{}
	for _, vm := range inv.vms {
		for _, d := range vm.disks {
			if volumeIDs[d.volumeID] {
				out[d.volumeID] = append(out[d.volumeID], Attachment{NodeUUID: vm.uuid, VMName: vm.name, DiskUUID: d.diskUUID})
			}
		}
	}
	return out
}

// recordAttach notes an attach that a finished task reported, ahead of the
// device change the watch will bring.
func (inv *inventory) recordAttach(vmRef types.ManagedObjectReference, volumeID, diskUUID string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	vm := inv.vms[vmRef]
	if vm == nil {
		return
	}
	for _, d := range vm.disks {
		if d.volumeID == volumeID {
			return
		}
	}
	// A provisional key below any real device key; the watch replaces it.
	key := int32(-1)
	for vm.disks[key].volumeID != "" {
		key--
	}
	vm.disks[key] = diskState{volumeID: volumeID, diskUUID: diskUUID}
}

// recordDetach notes a detach that a finished task reported.
func (inv *inventory) recordDetach(vmRef types.ManagedObjectReference, volumeID string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if vm := inv.vms[vmRef]; vm != nil {
		for k, d := range vm.disks {
			if d.volumeID == volumeID {
				delete(vm.disks, k)
			}
		}
	}
}

// datastoreList is the datastores with reachability from the node VMs'
// hosts (isNode), sorted by name.
func (inv *inventory) datastoreList(isNode func(*vmState) bool) []Datastore {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	type node struct {
		name string
		host types.ManagedObjectReference
	}
	var nodes []node
	for _, vm := range inv.vms {
		if isNode(vm) {
			nodes = append(nodes, node{vm.name, vm.host})
		}
	}
	out := make([]Datastore, 0, len(inv.datastores))
	for _, ds := range inv.datastores {
		d := Datastore{
			ID: ds.ref.Value, Name: ds.name, URL: ds.url,
			CapacityBytes: ds.capacity, FreeBytes: ds.free,
		}
		for _, n := range nodes {
			if !ds.accessible || !ds.mounts[n.host] {
				d.Unreachable = append(d.Unreachable, n.name)
			}
		}
		sort.Strings(d.Unreachable)
		d.Reachable = ds.accessible && len(d.Unreachable) == 0
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// datastore returns one datastore's cached facts.
func (inv *inventory) datastore(id string) (dsState, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	ds, ok := inv.datastores[types.ManagedObjectReference{Type: "Datastore", Value: id}]
	if !ok {
		return dsState{}, false
	}
	return *ds, true
}

// datastoreRefs lists every datastore's reference.
func (inv *inventory) datastoreRefs() []types.ManagedObjectReference {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	out := make([]types.ManagedObjectReference, 0, len(inv.datastores))
	for ref := range inv.datastores {
		out = append(out, ref)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out
}

// vmRef reports whether a VM is (still) in the inventory.
func (inv *inventory) hasVM(ref types.ManagedObjectReference) bool {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	_, ok := inv.vms[ref]
	return ok
}

// normalizeVMUUID returns a BIOS UUID as 36 lowercase dashed characters, or
// "" when s is not a UUID. It accepts the SMBIOS serial form
// ("VMware-42 1a …") too.
func normalizeVMUUID(s string) string {
	h := hexDigits(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "vmware-"))
	if len(h) != 32 {
		return ""
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// normalizeDiskUUID returns a disk UUID as 32 lowercase hex digits.
func normalizeDiskUUID(s string) string {
	return hexDigits(strings.ToLower(s))
}

func hexDigits(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
			b.WriteRune(r)
		case r == '-' || r == ' ':
		default:
			return ""
		}
	}
	return b.String()
}
