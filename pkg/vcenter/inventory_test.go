package vcenter

import (
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

func disk(key int32, volumeID, uuid string) *types.VirtualDisk {
	return &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: key,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: "[ds] fcd/" + volumeID + ".vmdk"},
				Uuid:                         uuid,
			},
		},
		VDiskId: &types.ID{Id: volumeID},
	}
}

func TestInventoryDeviceChanges(t *testing.T) {
	inv := newInventory()
	vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-1"}
	inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindEnter, Obj: vm, ChangeSet: []types.PropertyChange{
		{Name: "name", Op: types.PropertyChangeOpAssign, Val: "node-1"},
		{Name: "config.uuid", Op: types.PropertyChangeOpAssign, Val: "4261C914-CE7C-56F2-A9E2-7D27C27B3AB3"},
		{Name: "config.hardware.device", Op: types.PropertyChangeOpAssign, Val: types.ArrayOfVirtualDevice{VirtualDevice: []types.BaseVirtualDevice{
			&types.VirtualLsiLogicSASController{}, disk(2000, "vol-a", "6000C298-595b-f457-5739-e9105b2c0c2d"),
		}}},
	}})
	if a := inv.attachments("vol-a"); len(a) != 1 || a[0].DiskUUID != "6000c298595bf4575739e9105b2c0c2d" || a[0].NodeUUID != "4261c914-ce7c-56f2-a9e2-7d27c27b3ab3" {
		t.Fatalf("attachments(vol-a) = %+v", a)
	}

	// An attach noted from a task, then the real device as a keyed element.
	inv.recordAttach(vm, "vol-b", "aa")
	if ok := inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindModify, Obj: vm, ChangeSet: []types.PropertyChange{
		{Name: "config.hardware.device[2001]", Op: types.PropertyChangeOpAdd, Val: disk(2001, "vol-b", "bb")},
	}}); !ok {
		t.Fatal("keyed device add not applied")
	}
	if a := inv.attachments("vol-b"); len(a) != 1 || a[0].DiskUUID != "bb" {
		t.Errorf("attachments(vol-b) = %+v; want the real device only", a)
	}

	// A change below an element asks for a re-read.
	if ok := inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindModify, Obj: vm, ChangeSet: []types.PropertyChange{
		{Name: "config.hardware.device[2001].backing.fileName", Op: types.PropertyChangeOpAssign, Val: "x"},
	}}); ok {
		t.Error("nested device change applied; want a re-read")
	}

	inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindModify, Obj: vm, ChangeSet: []types.PropertyChange{
		{Name: "config.hardware.device[2001]", Op: types.PropertyChangeOpRemove},
	}})
	if a := inv.attachments("vol-b"); len(a) != 0 {
		t.Errorf("after remove: %+v", a)
	}

	inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindLeave, Obj: vm})
	if _, _, ok := inv.nodeVM("4261c914-ce7c-56f2-a9e2-7d27c27b3ab3"); ok {
		t.Error("VM still found after leave")
	}
}

func TestInventoryReachability(t *testing.T) {
	inv := newInventory()
	h1 := types.ManagedObjectReference{Type: "HostSystem", Value: "host-1"}
	h2 := types.ManagedObjectReference{Type: "HostSystem", Value: "host-2"}
	for i, h := range []types.ManagedObjectReference{h1, h2} {
		vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-" + h.Value}
		inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindEnter, Obj: vm, ChangeSet: []types.PropertyChange{
			{Name: "name", Val: []string{"node-a", "node-b"}[i]},
			{Name: "runtime.host", Val: h},
		}})
	}
	yes, no := true, false
	ds := types.ManagedObjectReference{Type: "Datastore", Value: "ds-1"}
	inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindEnter, Obj: ds, ChangeSet: []types.PropertyChange{
		{Name: "summary.name", Val: "ds1"},
		{Name: "summary.accessible", Val: true},
		{Name: "host", Val: types.ArrayOfDatastoreHostMount{DatastoreHostMount: []types.DatastoreHostMount{
			{Key: h1, MountInfo: types.HostMountInfo{Mounted: &yes, Accessible: &yes}},
			{Key: h2, MountInfo: types.HostMountInfo{Mounted: &yes, Accessible: &no}},
		}}},
	}})
	got := inv.datastoreList(notTemplate)
	if len(got) != 1 || got[0].Reachable || len(got[0].Unreachable) != 1 || got[0].Unreachable[0] != "node-b" {
		t.Fatalf("datastores %+v; want unreachable from node-b", got)
	}
	inv.apply(types.ObjectUpdate{Kind: types.ObjectUpdateKindModify, Obj: ds, ChangeSet: []types.PropertyChange{
		{Name: `host["host-2"]`, Op: types.PropertyChangeOpAssign, Val: types.DatastoreHostMount{Key: h2, MountInfo: types.HostMountInfo{Mounted: &yes, Accessible: &yes}}},
	}})
	if got := inv.datastoreList(notTemplate); !got[0].Reachable {
		t.Errorf("after the mount became accessible: %+v", got)
	}
}
