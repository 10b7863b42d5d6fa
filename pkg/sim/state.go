package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// What a real vCenter keeps across a restart, the embedded one keeps in
// DIR/state, one small JSON file per object, each written whole to a
// temporary file and renamed over the old one: a process killed at any
// moment leaves every file either as it was or as it became, never half
// written. An operation writes its records when its effect is complete and
// before its task reports success; it writes them after the files it
// creates and before it removes the files it deletes, so a kill in
// between leaves at worst an unused file, as a real datastore can.
//
//	state/meta.json            the shape of the inventory, the address, the task counter
//	state/tls.pem              the certificate and key (the thumbprint stays the same)
//	state/volumes/<id>.json    a CNS volume: its CNS record, disk, size, attachment
//	state/snapshots/<id>.json  a CNS snapshot
//	state/fcds/<id>.json       a first-class disk that is not a CNS volume
//	state/vms/<name>.json      a node VM powered off or deleted
//	state/nodes/<name>.json    a node VM added at run time (AddNodeVM): its host and reference
//	state/datastores/<n>.json  a datastore filled by a fault
//	state/clusters/<id>.json   a cluster whose vSAN File Service is off
//
// The inventory itself (datacenter, clusters, hosts, datastores, node VMs
// with their BIOS UUIDs, the neighbours from their seed) is seeded again
// the same way, so its managed object references are the same; meta.json
// checks that they are. Data
// files live on the datastores' directories and are not copied.
// Crash-consistent against a killed process, not against a power loss
// (files are not fsynced).

// stateVersion changes when records change incompatibly.
const stateVersion = 1

// taskRefGap is added to the highest task number of a previous run, so
// that tasks made after a kill, not yet in any record, are passed too.
const taskRefGap = 100000

// store reads and writes the state directory.
type store struct {
	dir   string
	locks keyedMutex // one writer per record
}

func openStore(root string) (*store, error) {
	st := &store{dir: filepath.Join(root, "state")}
	for _, kind := range []string{"volumes", "snapshots", "fcds", "vms", "nodes", "datastores", "clusters"} {
		if err := os.MkdirAll(filepath.Join(st.dir, kind), 0o750); err != nil {
			return nil, err
		}
	}
	// Temporary files of writes a kill interrupted.
	_ = filepath.WalkDir(st.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".tmp-") {
			_ = os.Remove(p)
		}
		return nil
	})
	return st, nil
}

func (st *store) path(kind, name string) string {
	if kind == "" {
		return filepath.Join(st.dir, name)
	}
	return filepath.Join(st.dir, kind, name+".json")
}

// writeFile writes data to path atomically (temporary file, rename).
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp-" + uuid.NewString()[:8]
	if err := os.WriteFile(tmp, data, mode); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// put writes one record as JSON, vCenter types with their type names.
func (st *store) put(kind, name string, v any) error {
	if st == nil {
		return nil
	}
	var b bytes.Buffer
	if err := types.NewJSONEncoder(&b).Encode(v); err != nil {
		return fmt.Errorf("encode %s/%s: %w", kind, name, err)
	}
	if err := writeFile(st.path(kind, name), b.Bytes(), 0o640); err != nil {
		return fmt.Errorf("write %s/%s: %w", kind, name, err)
	}
	return nil
}

func (st *store) get(kind, name string, v any) error {
	data, err := os.ReadFile(st.path(kind, name))
	if err != nil {
		return err
	}
	if err := types.NewJSONDecoder(bytes.NewReader(data)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", st.path(kind, name), err)
	}
	return nil
}

func (st *store) del(kind, name string) error {
	if st == nil {
		return nil
	}
	if err := os.Remove(st.path(kind, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// names lists the records of a kind, sorted.
func (st *store) names(kind string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(st.dir, kind))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// meta is state/meta.json.
type meta struct {
	Version      int               `json:"version"`
	NodeVMs      int               `json:"nodeVMs"`
	ZoneBNodeVMs int               `json:"zoneBNodeVMs"`
	Listen       string            `json:"listen"`
	VMs          map[string]string `json:"vms"`        // name → managed object ID
	Datastores   map[string]string `json:"datastores"` // name → managed object ID
	MaxTask      int64             `json:"maxTask"`
	NFS          string            `json:"nfs,omitempty"` // the NFS server's address
	// Neighbours are the neighbours the inventory was seeded with; their
	// VMs' references are in records (attachments of the other cluster's
	// volumes), so a later Start makes the same ones (shapeNeighbours).
	Neighbours *Neighbours `json:"neighbours,omitempty"`
	Saved      time.Time   `json:"saved"`
}

func (st *store) loadMeta() (*meta, error) {
	var m meta
	err := st.get("", "meta.json", &m)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if m.Version != stateVersion {
		return nil, fmt.Errorf("%s was written by another version of vsphere-sim (state version %d, this one reads %d): start on a new --dir",
			st.dir, m.Version, stateVersion)
	}
	return &m, nil
}

func (st *store) saveMeta(m meta) error {
	m.Version, m.Saved = stateVersion, time.Now().UTC()
	return st.put("", "meta.json", m)
}

// volumeRecord is a CNS volume as kept across restarts.
type volumeRecord struct {
	Seq       int64                `json:"seq"`
	Created   time.Time            `json:"created"`
	Datastore string               `json:"datastore"`
	SizeMB    int64                `json:"sizeMB"`
	DiskPath  string               `json:"diskPath"`
	DiskUUID  string               `json:"diskUUID"`
	VM        string               `json:"vm,omitempty"` // managed object ID of the VM it is attached to
	FCD       types.VStorageObject `json:"fcd"`
	CNS       cnstypes.CnsVolume   `json:"cns"`
	MaxTask   int64                `json:"maxTask"`
	Share     *shareRecord         `json:"share,omitempty"` // a file volume's share (vsan_fileshares.go)
}

// snapshotRecord is a CNS snapshot as kept across restarts.
type snapshotRecord struct {
	Seq    int64                `json:"seq"`
	SizeMB int64                `json:"sizeMB"`
	File   string               `json:"file"`
	CNS    cnstypes.CnsSnapshot `json:"cns"`
}

// fcdRecord is a first-class disk that is not a CNS volume.
type fcdRecord struct {
	Datastore string               `json:"datastore"`
	Object    types.VStorageObject `json:"object"`
}

// vmRecord is a node VM that is not as seeded.
type vmRecord struct {
	PoweredOff bool `json:"poweredOff,omitempty"`
	Deleted    bool `json:"deleted,omitempty"`
}

// datastoreRecord is a datastore filled by FillDatastore.
type datastoreRecord struct {
	FilledBytes int64 `json:"filledBytes"`
}

// saveVolume writes the volume's record as it is now (or removes it when
// the volume is gone). Records of one volume are written one at a time, so
// the last write is the latest state.
func (m *volumeManager) saveVolume(id string) {
	if m.store == nil {
		return
	}
	defer m.store.locks.lock("volume/" + id)()
	m.mu.Lock()
	v, ok := m.volumes[id]
	var rec volumeRecord
	if ok {
		rec = volumeRecord{
			Seq: v.seq, Created: v.created, Datastore: v.ds.name, SizeMB: v.sizeMB,
			DiskPath: v.diskPath, DiskUUID: v.diskUUID, FCD: v.fcd, CNS: v.cns,
			MaxTask: m.lab.maxTask.Load(), Share: v.share.record(),
		}
		if v.vm != nil {
			rec.VM = v.vm.Value
		}
	}
	m.mu.Unlock()
	var err error
	if ok {
		err = m.store.put("volumes", id, rec)
	} else {
		err = m.store.del("volumes", id)
	}
	if err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping the volume's state failed", "volumeID", id)
	}
}

// saveSnapshot writes (or removes) one snapshot's record.
func (m *volumeManager) saveSnapshot(rec *snapshotRec, gone bool) {
	if m.store == nil {
		return
	}
	id := rec.cns.SnapshotId.Id
	var err error
	if gone {
		err = m.store.del("snapshots", id)
	} else {
		err = m.store.put("snapshots", id, snapshotRecord{Seq: rec.seq, SizeMB: rec.sizeMB, File: rec.file, CNS: rec.cns})
	}
	if err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping the snapshot's state failed", "snapshotID", id)
	}
}

// fcdSyncInterval is how often first-class disks made outside CNS (the
// vslm API: CreateDisk_Task and the like) are written to the state dir.
// Those made by CNS are in their volumes' records at once.
const fcdSyncInterval = time.Second

// syncFCDs keeps state/fcds in step with the catalog until the vCenter stops.
func (s *Sim) syncFCDs() {
	t := time.NewTicker(fcdSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.syncDone:
			return
		case <-t.C:
			s.syncFCDsOnce()
		}
	}
}

// syncFCDsOnce writes the first-class disks that are not CNS volumes and
// removes the records of those gone; it remembers what it wrote, so a
// quiet tick costs no file I/O.
func (s *Sim) syncFCDsOnce() {
	s.fcdMu.Lock()
	defer s.fcdMu.Unlock()
	if s.keptFCDs == nil {
		s.keptFCDs = map[string]fcdRecord{}
		names, _ := s.store.names("fcds")
		for _, id := range names {
			var rec fcdRecord
			if err := s.store.get("fcds", id, &rec); err == nil {
				s.keptFCDs[id] = rec
			}
		}
	}
	want := map[string]fcdRecord{}
	c := s.model.Service.Context.For(vim25.Path)
	vsom := c.Map.VStorageObjectManager()
	s.inv.withSim(func() {
		c.WithLock(vsom, func() {
			for ref, objs := range vsom.Catalog() {
				d, ok := s.inv.dsByRef[ref]
				if !ok {
					continue
				}
				for id, o := range objs {
					want[id.Id] = fcdRecord{Datastore: d.name, Object: o.VStorageObject}
				}
			}
		})
	})
	s.cns.mu.Lock()
	for id := range s.cns.volumes {
		delete(want, id)
	}
	s.cns.mu.Unlock()
	for id := range s.keptFCDs {
		if _, ok := want[id]; !ok {
			if err := s.store.del("fcds", id); err == nil {
				delete(s.keptFCDs, id)
			}
		}
	}
	for id, rec := range want {
		if old, ok := s.keptFCDs[id]; ok && old.Object.Config.CapacityInMB == rec.Object.Config.CapacityInMB &&
			old.Object.Config.Name == rec.Object.Config.Name {
			continue
		}
		if err := s.store.put("fcds", id, rec); err != nil {
			klog.ErrorS(err, "vCenter simulator: keeping a first-class disk failed", "id", id)
			continue
		}
		s.keptFCDs[id] = rec
	}
}
