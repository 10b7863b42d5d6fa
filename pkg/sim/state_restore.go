package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// checkShape compares the seeded inventory with the one the state was kept
// for: same node VMs and datastores under the same references, or the
// records would point at other objects.
func (s *Sim) checkShape(m *meta) error {
	for _, n := range s.inv.nodeList() {
		if ref, ok := m.VMs[n.name]; ok && ref != n.ref.Value {
			return fmt.Errorf("node VM %s is %s now but was %s when the state in %s was kept: start with the same vsphere-sim version and flags, or on a new --dir",
				n.name, n.ref.Value, ref, s.store.dir)
		}
	}
	for _, d := range s.inv.datastores {
		if ref, ok := m.Datastores[d.name]; ok && ref != d.ref.Value {
			return fmt.Errorf("datastore %s is %s now but was %s when the state in %s was kept", d.name, d.ref.Value, ref, s.store.dir)
		}
	}
	return nil
}

// shapeOptions takes the inventory's shape from the kept state when the
// options leave it open, and refuses a different one.
func shapeOptions(opts *Options, m *meta, explicitNodeVMs bool) error {
	if m == nil {
		return nil
	}
	if !explicitNodeVMs {
		opts.NodeVMs = m.NodeVMs
	}
	if opts.ZoneBNodeVMs == 0 {
		opts.ZoneBNodeVMs = m.ZoneBNodeVMs
	}
	if opts.NodeVMs != m.NodeVMs || opts.ZoneBNodeVMs != m.ZoneBNodeVMs {
		return fmt.Errorf("the state in %s is of %d node VMs and %d in zone B, not %d and %d: start with the same counts, or on a new --dir",
			opts.Dir, m.NodeVMs, m.ZoneBNodeVMs, opts.NodeVMs, opts.ZoneBNodeVMs)
	}
	return nil
}

// restore loads the kept state into the freshly seeded vCenter, before any
// client is served: node VMs' power, datastores filled, first-class disks,
// volumes (with their disks back on their VMs and, on powered-on VMs, their
// node-side devices), snapshots.
func (s *Sim) restore(ctx context.Context) (maxTask int64, err error) {
	st := s.store
	vctx := s.model.Service.Context.For(vim25.Path)
	names, err := st.names("vms")
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		var rec vmRecord
		if err := st.get("vms", name, &rec); err != nil {
			return 0, err
		}
		n, err := s.node(name)
		if err != nil {
			klog.InfoS("vCenter simulator: state of an unknown VM ignored", "vm", name)
			continue
		}
		switch {
		case rec.Deleted:
			if err := s.deleteVM(ctx, n); err != nil {
				return 0, err
			}
		case rec.PoweredOff:
			if err := s.powerVM(ctx, n, false); err != nil {
				return 0, err
			}
			n.poweredOff.set(true)
		}
	}
	if names, err = st.names("datastores"); err != nil {
		return 0, err
	}
	for _, name := range names {
		var rec datastoreRecord
		if err := st.get("datastores", name, &rec); err != nil {
			return 0, err
		}
		if d, ok := s.inv.dsByName[name]; ok {
			s.inv.setFilled(d, rec.FilledBytes)
		}
	}
	if err := s.restoreFCDs(vctx); err != nil {
		return 0, err
	}
	if maxTask, err = s.restoreVolumes(vctx); err != nil {
		return 0, err
	}
	if err := s.restoreSnapshots(); err != nil {
		return 0, err
	}
	for _, d := range s.inv.datastores {
		s.inv.publish(vctx, d)
	}
	return maxTask, nil
}

func (s *Sim) restoreFCDs(vctx *simulator.Context) error {
	names, err := s.store.names("fcds")
	if err != nil {
		return err
	}
	for _, id := range names {
		var rec fcdRecord
		if err := s.store.get("fcds", id, &rec); err != nil {
			return err
		}
		d, ok := s.inv.dsByName[rec.Datastore]
		if !ok {
			klog.InfoS("vCenter simulator: first-class disk on an unknown datastore ignored", "id", id, "datastore", rec.Datastore)
			continue
		}
		s.cns.catalogPut(vctx, d, rec.Object)
	}
	return nil
}

func (s *Sim) restoreVolumes(vctx *simulator.Context) (int64, error) {
	m := s.cns
	names, err := s.store.names("volumes")
	if err != nil {
		return 0, err
	}
	var maxTask int64
	for _, id := range names {
		var rec volumeRecord
		if err := s.store.get("volumes", id, &rec); err != nil {
			return 0, err
		}
		maxTask = max(maxTask, rec.MaxTask)
		d, ok := s.inv.dsByName[rec.Datastore]
		if !ok {
			return 0, fmt.Errorf("volume %s is on datastore %s, which the inventory does not have", id, rec.Datastore)
		}
		if rec.Share != nil {
			if err := s.restoreFileVolume(id, d, rec); err != nil {
				return 0, err
			}
			continue
		}
		v := &volume{
			seq: rec.Seq, created: rec.Created, cns: rec.CNS, ds: d, sizeMB: rec.SizeMB,
			diskPath: rec.DiskPath, diskUUID: rec.DiskUUID, fcd: rec.FCD,
		}
		v.descFile, v.flatFile = volumeFiles(d, id, rec.DiskPath) // intree.go
		if _, err := os.Stat(v.flatFile); errors.Is(err, fs.ErrNotExist) {
			// Never by the embedded vCenter's own doing (records go after
			// the files they name are made, and before they are removed):
			// someone removed it. The volume stays, empty.
			klog.ErrorS(err, "vCenter simulator: a kept volume's data file is missing; it is empty now", "volumeID", id, "file", v.flatFile)
			s.repairs++
			f, err := os.Create(v.flatFile)
			if err != nil {
				return 0, err
			}
			_ = f.Close()
			if err := os.Truncate(v.flatFile, v.sizeMB*mib); err != nil {
				return 0, err
			}
		}
		if st, err := os.Stat(v.flatFile); err == nil && st.Size() < v.sizeMB*mib {
			// An extend killed between its record and its file: finish it.
			if err := os.Truncate(v.flatFile, v.sizeMB*mib); err != nil {
				return 0, err
			}
		}
		s.cns.catalogPut(vctx, d, rec.FCD)
		s.inv.force(d, v.sizeMB*mib)
		m.mu.Lock()
		m.volumes[id] = v
		m.seq = max(m.seq, v.seq)
		m.mu.Unlock()
		if rec.VM == "" {
			if err := s.hv.sweep(v.flatFile); err != nil {
				klog.ErrorS(err, "vCenter simulator: removing a stray device failed", "volumeID", id)
			}
			continue
		}
		ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: rec.VM}
		if err := m.reattach(vctx, v, ref); err != nil {
			klog.ErrorS(err, "vCenter simulator: a kept attachment could not be restored; the volume is detached", "volumeID", id, "vm", rec.VM)
			m.saveVolume(id)
		}
	}
	return maxTask, nil
}

// restoreFileVolume brings back a file volume and its share; its access
// points name the NFS server's address of this run.
func (s *Sim) restoreFileVolume(id string, d *dsModel, rec volumeRecord) error {
	m := s.cns
	sh, repaired, err := restoreShare(d, rec.Share)
	if err != nil {
		return err
	}
	if repaired {
		klog.ErrorS(nil, "vCenter simulator: a kept file share's directory is missing; it is empty now", "volumeID", id, "dir", sh.dir)
		s.repairs++
	}
	v := &volume{seq: rec.Seq, created: rec.Created, cns: rec.CNS, ds: d, sizeMB: rec.SizeMB, share: sh}
	v.cns.BackingObjectDetails = m.shareDetails(sh, rec.SizeMB)
	s.inv.force(d, v.sizeMB*mib)
	m.mu.Lock()
	m.volumes[id] = v
	m.seq = max(m.seq, v.seq)
	m.mu.Unlock()
	return nil
}

// reattach puts a kept attachment back: the disk device on the VM, and the
// node-side device when the VM runs.
func (m *volumeManager) reattach(vctx *simulator.Context, v *volume, ref types.ManagedObjectReference) error {
	vm, ok := lookupVM(vctx, ref)
	if !ok {
		return fmt.Errorf("VM %s is gone", ref.Value)
	}
	c := vctx.For(vctx.Map.Path)
	disk, fault := m.newDiskDevice(c, vm, v)
	if fault != nil {
		return errors.New(fault.LocalizedMessage)
	}
	if f := m.reconfigure(c, vm, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk}, v.ds); f != nil {
		return fmt.Errorf("reconfigure: %s", faultMessage(f))
	}
	m.mu.Lock()
	v.vm = &ref
	m.mu.Unlock()
	if n, ok := m.inv.nodeOf(ref); ok && !n.poweredOff.get() {
		if err := m.hv.attach(v.cns.VolumeId.Id, v.flatFile, n.byIDDir, v.diskUUID); err != nil {
			return fmt.Errorf("node-side device: %w", err)
		}
	}
	return nil
}

func (s *Sim) restoreSnapshots() error {
	m := s.cns
	names, err := s.store.names("snapshots")
	if err != nil {
		return err
	}
	for _, id := range names {
		var rec snapshotRecord
		if err := s.store.get("snapshots", id, &rec); err != nil {
			return err
		}
		volID := rec.CNS.VolumeId.Id
		m.mu.Lock()
		if _, ok := m.volumes[volID]; !ok {
			m.mu.Unlock()
			klog.InfoS("vCenter simulator: snapshot of a volume that is gone ignored", "snapshotID", id, "volumeID", volID)
			continue
		}
		if m.snaps == nil {
			m.snaps = map[string][]*snapshotRec{}
		}
		m.snaps[volID] = append(m.snaps[volID], &snapshotRec{cns: rec.CNS, seq: rec.Seq, sizeMB: rec.SizeMB, file: rec.File})
		m.seq = max(m.seq, rec.Seq)
		m.mu.Unlock()
	}
	m.mu.Lock()
	for _, list := range m.snaps {
		sortSnapshots(list)
	}
	m.mu.Unlock()
	return nil
}

// catalogPut puts a first-class disk into the VStorageObjectManager's
// catalog.
func (m *volumeManager) catalogPut(vctx *simulator.Context, d *dsModel, obj types.VStorageObject) {
	c := vctx.For(vctx.Map.Path)
	vsom := c.Map.VStorageObjectManager()
	m.inv.withSim(func() {
		c.WithLock(vsom, func() {
			cat := vsom.Catalog()
			if cat[d.ref] == nil {
				// govmomi's simulator makes a datastore's fcd directory when
				// it makes its catalog: a catalog made here needs it too,
				// or the next first-class disk there is FileNotFound.
				if err := os.MkdirAll(filepath.Join(d.dir, "fcd"), 0o755); err != nil {
					klog.ErrorS(err, "Making the datastore's fcd directory", "datastore", d.name)
				}
				cat[d.ref] = map[types.ID]*simulator.VStorageObject{}
			}
			cat[d.ref][obj.Config.Id] = &simulator.VStorageObject{VStorageObject: obj}
		})
	})
}
