package sim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Storage vMotions of unrelated VMs by a user, as neighbour_tasks.go
// describes them.

// storageVMotion moves an unrelated VM's directory to another datastore.
func (nb *neighbourhood) storageVMotion(vctx *simulator.Context, d time.Duration) (taskSpec, error) {
	var from, to *dsModel
	st, ok := nb.find(vctx, nb.vmLists(false, NeighbourWorkload), func(st vmState) bool {
		from, to = nb.relocation(st)
		return to != nil
	})
	if !ok {
		return taskSpec{}, errNoCandidate
	}
	user := nb.opts.User
	if user == "" {
		user = nb.s.Username()
	}
	return taskSpec{
		method: "RelocateVM_Task", describe: "VirtualMachine.relocate",
		entity: st.ref, reason: &types.TaskReasonUser{UserName: callerName(user)},
		vms:      []types.ManagedObjectReference{st.ref},
		duration: nb.spread(Realistic["RelocateVM_Task"], d),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			return nil, nb.relocate(vctx, st.ref, from, to)
		},
	}, nil
}

// relocation picks where a VM's directory goes: another shared datastore
// its host mounts; to is nil when there is none.
func (nb *neighbourhood) relocation(st vmState) (from, to *dsModel) {
	from, ok := nb.s.inv.dsByName[st.home]
	h, hok := nb.s.inv.hostOf(st.host)
	if !ok || !hok || st.template {
		return nil, nil
	}
	var fit []*dsModel
	for _, d := range h.datastores {
		if d != from && len(d.hosts) > 1 {
			fit = append(fit, d)
		}
	}
	if len(fit) == 0 {
		return from, nil
	}
	return from, fit[nb.pick(len(fit))]
}

// relocate is a Storage vMotion's effect: the VM's directory and what is
// in it (its .vmx, logs, the disks there) are on to from now on.
func (nb *neighbourhood) relocate(vctx *simulator.Context, ref types.ManagedObjectReference, from, to *dsModel) types.BaseMethodFault {
	vm, ok := lookupVM(vctx, ref)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	var name string
	vctx.WithLock(vm, func() { name = vm.Name })
	oldPrefix, newPrefix := "["+from.name+"] "+name+"/", "["+to.name+"] "+name+"/"
	if err := moveDir(filepath.Join(from.dir, name), filepath.Join(to.dir, name)); err != nil {
		return &types.FileFault{File: err.Error()}
	}
	var datastores []types.ManagedObjectReference
	vctx.WithLock(vm, func() {
		rename := func(p string) string {
			if rest, ok := strings.CutPrefix(p, oldPrefix); ok {
				return newPrefix + rest
			}
			if p == "["+from.name+"] "+name {
				return "[" + to.name + "] " + name
			}
			return p
		}
		devices := make([]types.BaseVirtualDevice, 0, len(vm.Config.Hardware.Device))
		for _, dev := range vm.Config.Hardware.Device {
			devices = append(devices, movedDisk(dev, rename, to))
		}
		files := vm.Config.Files
		files.VmPathName, files.SnapshotDirectory = rename(files.VmPathName), rename(files.SnapshotDirectory)
		files.SuspendDirectory, files.LogDirectory = rename(files.SuspendDirectory), rename(files.LogDirectory)
		for _, d := range vm.Datastore {
			if d == from.ref {
				d = to.ref
			}
			if !slices.Contains(datastores, d) {
				datastores = append(datastores, d)
			}
		}
		changes := []types.PropertyChange{
			{Name: "config.hardware.device", Val: devices},
			{Name: "config.files", Val: files},
			{Name: "datastore", Val: datastores},
			{Name: "summary.config.vmPathName", Val: files.VmPathName},
		}
		if vm.LayoutEx != nil {
			layout := *vm.LayoutEx
			layout.File = slices.Clone(layout.File)
			for i := range layout.File {
				layout.File[i].Name = rename(layout.File[i].Name)
			}
			changes = append(changes, types.PropertyChange{Name: "layoutEx", Val: &layout})
		}
		vctx.Update(vm, changes)
	})
	if !slices.Contains(datastores, from.ref) {
		nb.moveListed(vctx, from.ref, to.ref, "vm", ref)
	}
	klog.V(2).InfoS("Neighbour: Storage vMotion moved a VM", "vm", name, "from", from.name, "to", to.name)
	return nil
}

// movedDisk is dev with its disk file renamed (a copy; dev otherwise).
func movedDisk(dev types.BaseVirtualDevice, rename func(string) string, to *dsModel) types.BaseVirtualDevice {
	disk, ok := dev.(*types.VirtualDisk)
	if !ok {
		return dev
	}
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok || rename(b.FileName) == b.FileName {
		return dev
	}
	cp, nb := *disk, *b
	nb.FileName, nb.Datastore = rename(b.FileName), &to.ref
	cp.Backing = &nb
	return &cp
}

// moveDir moves the files of src into dst (which may hold some of the
// VM's files already: a data disk on the target datastore), but for
// vmware.log: the simulator keeps the path of a VM's log where it made it,
// and writes there.
func moveDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "vmware.log" {
			continue
		}
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
