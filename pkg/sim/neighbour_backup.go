package sim

import (
	"slices"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// Backup snapshots by the backup user, as neighbour_tasks.go describes
// them: a snapshot, the backup reading the disks, the snapshot's removal.

// backupHold is how long a backup reads a VM's disks before it removes
// its snapshot (assumed; spread by ±50%).
const backupHold = 2 * time.Minute

// backupSnapshotName is the backup user's temporary snapshot.
const backupSnapshotName = "BACKUP-SVC TEMPORARY SNAPSHOT"

// backupSnapshot snapshots a running VM, ours sometimes; its removal
// follows when the backup has read the disks.
func (nb *neighbourhood) backupSnapshot(vctx *simulator.Context, d time.Duration) (taskSpec, error) {
	st, ok := nb.find(vctx, nb.vmLists(true, NeighbourWorkload, NeighbourOtherNode), func(st vmState) bool {
		return st.on && !st.template && nb.claimBackup(st.ref)
	})
	if !ok {
		return taskSpec{}, errNoCandidate
	}
	req := &types.CreateSnapshot_Task{This: st.ref, Name: backupSnapshotName, Description: "Taken by backup-svc for a backup job; removed when the job ends"}
	return taskSpec{
		method: "CreateSnapshot_Task", describe: "VirtualMachine.createSnapshot",
		entity: st.ref, reason: &types.TaskReasonUser{UserName: BackupUser},
		vms:      []types.ManagedObjectReference{st.ref},
		duration: nb.spread(Realistic["CreateSnapshot_Task"], d),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			res, fault := nb.inner(vctx, callTask(methods.CreateSnapshot_Task, req))
			snap, ok := res.(types.ManagedObjectReference)
			if fault != nil || !ok {
				nb.releaseBackup(st.ref)
				return res, fault
			}
			nb.mu.Lock()
			nb.backups[st.ref] = snap
			nb.mu.Unlock()
			go nb.endBackup(st.ref)
			return res, nil
		},
	}, nil
}

// claimBackup marks a VM as being backed up; false when it already is.
func (nb *neighbourhood) claimBackup(vm types.ManagedObjectReference) bool {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	if _, busy := nb.backups[vm]; busy {
		return false
	}
	nb.backups[vm] = types.ManagedObjectReference{} // its snapshot is being taken
	return true
}

func (nb *neighbourhood) releaseBackup(vm types.ManagedObjectReference) {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	delete(nb.backups, vm)
}

// endBackup removes the backup's snapshot once the backup has read the
// disks (unless StartNeighbourTask removed it first).
func (nb *neighbourhood) endBackup(vm types.ManagedObjectReference) {
	t := time.NewTimer(nb.spread(backupHold, 0))
	defer t.Stop()
	select {
	case <-nb.s.lab.stopping():
		return
	case <-t.C:
	}
	spec, err := nb.backupRemoveOf(vm, 0)
	if err != nil {
		return
	}
	nb.launch(NeighbourBackupRemove, nb.s.vimContext(), spec)
}

// backupRemove removes a backup snapshot, the oldest VM's first.
func (nb *neighbourhood) backupRemove(_ *simulator.Context, d time.Duration) (taskSpec, error) {
	nb.mu.Lock()
	var vms []types.ManagedObjectReference
	for vm, snap := range nb.backups {
		if snap.Value != "" {
			vms = append(vms, vm)
		}
	}
	nb.mu.Unlock()
	if len(vms) == 0 {
		return taskSpec{}, errNoCandidate
	}
	slices.SortFunc(vms, func(a, b types.ManagedObjectReference) int { return int(refNumber(a.Value) - refNumber(b.Value)) })
	return nb.backupRemoveOf(vms[0], d)
}

// backupRemoveOf is the removal of vm's backup snapshot.
func (nb *neighbourhood) backupRemoveOf(vm types.ManagedObjectReference, d time.Duration) (taskSpec, error) {
	nb.mu.Lock()
	snap, ok := nb.backups[vm]
	if ok && snap.Value != "" {
		delete(nb.backups, vm)
	}
	nb.mu.Unlock()
	if !ok || snap.Value == "" {
		return taskSpec{}, errNoCandidate
	}
	req := &types.RemoveSnapshot_Task{This: snap, RemoveChildren: false}
	return taskSpec{
		method: "RemoveSnapshot_Task", describe: "VirtualMachine.removeSnapshot",
		entity: vm, reason: &types.TaskReasonUser{UserName: BackupUser},
		vms:      []types.ManagedObjectReference{vm},
		duration: nb.spread(Realistic["RemoveSnapshot_Task"], d),
		run: func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
			return nb.inner(vctx, callTask(methods.RemoveSnapshot_Task, req))
		},
	}, nil
}
