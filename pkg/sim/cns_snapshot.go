package sim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns/methods"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// maxSnapshotsPerDisk is vSphere's limit of snapshots on one first-class
// disk (the delta-disk chain); the driver's own limit is usually lower.
const maxSnapshotsPerDisk = 32

// snapshotRec is one CNS snapshot. Real CNS keeps a delta disk; here the
// snapshot is a sparse copy of the volume's data file as it was, so that
// a volume created from it holds exactly the data of that moment.
type snapshotRec struct {
	cns    cnstypes.CnsSnapshot
	seq    int64
	sizeMB int64  // the volume's size when taken
	file   string // <ds dir>/fcd/<volumeId>-snap-<snapshotId>-flat.vmdk
}

// CnsCreateSnapshots snapshots each volume of the specs; each spec gets
// its result (a CnsSnapshotCreateResult, or a fault).
func (m *volumeManager) CnsCreateSnapshots(ctx *simulator.Context, req *cnstypes.CnsCreateSnapshots) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsCreateSnapshots", run: func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.SnapshotSpecs) == 0 {
			return nil, invalidArgument("snapshotSpecs", "no snapshot spec")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.SnapshotSpecs {
			results = append(results, m.createSnapshot(spec))
		}
		return batch(results...), nil
	}})
	return &methods.CnsCreateSnapshotsBody{Res: &cnstypes.CnsCreateSnapshotsResponse{Returnval: ref}}
}

func (m *volumeManager) createSnapshot(spec cnstypes.CnsSnapshotCreateSpec) *cnstypes.CnsSnapshotCreateResult {
	id := spec.VolumeId.Id
	res := &cnstypes.CnsSnapshotCreateResult{}
	res.VolumeId = spec.VolumeId
	defer m.volLocks.lock(id)()
	v, ok := m.snapshot(id)
	if !ok {
		res.Fault = volumeNotFound(id)
		return res
	}
	if v.share != nil {
		res.Fault = notBlock(id, "a snapshot")
		return res
	}
	m.mu.Lock()
	n := len(m.snaps[id])
	m.mu.Unlock()
	if n >= maxSnapshotsPerDisk {
		res.Fault = cnsFault("Failed to create snapshot of volume %s: the disk already has %d snapshots, the most vSphere allows", id, n)
		return res
	}
	snapID := uuid.NewString()
	file := filepath.Join(filepath.Dir(v.flatFile), fmt.Sprintf("%s-snap-%s-flat.vmdk", id, snapID))
	if err := copySparse(v.flatFile, file); err != nil {
		_ = os.Remove(file)
		res.Fault = cnsFault("Failed to create snapshot of volume %s: %v", id, err)
		return res
	}
	rec := &snapshotRec{
		cns: cnstypes.CnsSnapshot{
			SnapshotId:  cnstypes.CnsSnapshotId{Id: snapID},
			VolumeId:    spec.VolumeId,
			Description: spec.Description,
			CreateTime:  time.Now().UTC(),
		},
		sizeMB: v.sizeMB,
		file:   file,
	}
	m.mu.Lock()
	m.seq++
	rec.seq = m.seq
	if m.snaps == nil {
		m.snaps = map[string][]*snapshotRec{}
	}
	m.snaps[id] = append(m.snaps[id], rec)
	m.mu.Unlock()
	m.saveSnapshot(rec, false)
	klog.V(2).InfoS("CNS snapshot created", "volumeID", id, "snapshotID", snapID, "description", spec.Description)
	res.Snapshot = rec.cns
	return res
}

// CnsDeleteSnapshots deletes each snapshot of the specs; an unknown one
// gets a CnsSnapshotNotFoundFault in its result.
func (m *volumeManager) CnsDeleteSnapshots(ctx *simulator.Context, req *cnstypes.CnsDeleteSnapshots) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsDeleteSnapshots", run: func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		if len(req.SnapshotDeleteSpecs) == 0 {
			return nil, invalidArgument("snapshotDeleteSpecs", "no snapshot delete spec")
		}
		var results []cnstypes.BaseCnsVolumeOperationResult
		for _, spec := range req.SnapshotDeleteSpecs {
			results = append(results, m.deleteSnapshot(spec))
		}
		return batch(results...), nil
	}})
	return &methods.CnsDeleteSnapshotBody{Res: &cnstypes.CnsDeleteSnapshotsResponse{Returnval: ref}}
}

func (m *volumeManager) deleteSnapshot(spec cnstypes.CnsSnapshotDeleteSpec) *cnstypes.CnsSnapshotDeleteResult {
	id, snapID := spec.VolumeId.Id, spec.SnapshotId.Id
	res := &cnstypes.CnsSnapshotDeleteResult{SnapshotId: spec.SnapshotId}
	res.VolumeId = spec.VolumeId
	defer m.volLocks.lock(id)()
	m.mu.Lock()
	var rec *snapshotRec
	list := m.snaps[id]
	for i, s := range list {
		if s.cns.SnapshotId.Id == snapID {
			rec = s
			m.snaps[id] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(m.snaps[id]) == 0 {
		delete(m.snaps, id)
	}
	m.mu.Unlock()
	if rec == nil {
		res.Fault = snapshotNotFound(id, snapID)
		return res
	}
	m.saveSnapshot(rec, true)
	if err := os.Remove(rec.file); err != nil && !os.IsNotExist(err) {
		klog.ErrorS(err, "remove snapshot file", "volumeID", id, "snapshotID", snapID)
	}
	klog.V(2).InfoS("CNS snapshot deleted", "volumeID", id, "snapshotID", snapID)
	return res
}

// CnsQuerySnapshots returns the snapshots the filter's specs select (all
// when there are none) in creation order, one page per call as the
// cursor says. A spec naming an unknown volume or snapshot gets an entry
// with a fault, as real CNS answers.
func (m *volumeManager) CnsQuerySnapshots(ctx *simulator.Context, req *cnstypes.CnsQuerySnapshots) soap.HasFault {
	ref := m.runTask(ctx, taskOp{method: "CnsQuerySnapshots", run: func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		f := req.SnapshotQueryFilter
		var offset, limit int64
		if f.Cursor != nil {
			offset, limit = f.Cursor.Offset, f.Cursor.Limit
		}
		if offset < 0 {
			return nil, invalidArgument("snapshotQueryFilter.cursor.offset", "cursor offset is negative")
		}
		entries := m.querySnapshots(f.SnapshotQuerySpecs)
		total := int64(len(entries))
		offset = min(offset, total)
		end := total
		if limit > 0 {
			end = min(total, offset+limit)
		}
		return &cnstypes.CnsSnapshotQueryResult{
			Entries: entries[offset:end],
			Cursor:  cnstypes.CnsCursor{Offset: end, Limit: limit, TotalRecords: total},
		}, nil
	}})
	return &methods.CnsQuerySnapshotsBody{Res: &cnstypes.CnsQuerySnapshotsResponse{Returnval: ref}}
}

func (m *volumeManager) querySnapshots(specs []cnstypes.CnsSnapshotQuerySpec) []cnstypes.CnsSnapshotQueryResultEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var recs []*snapshotRec
	var faults []cnstypes.CnsSnapshotQueryResultEntry
	if len(specs) == 0 {
		for _, list := range m.snaps {
			recs = append(recs, list...)
		}
	}
	for _, s := range specs {
		id := s.VolumeId.Id
		if _, ok := m.volumes[id]; !ok {
			faults = append(faults, cnstypes.CnsSnapshotQueryResultEntry{Error: volumeNotFound(id)})
			continue
		}
		found := false
		for _, r := range m.snaps[id] {
			if s.SnapshotId == nil || s.SnapshotId.Id == r.cns.SnapshotId.Id {
				recs = append(recs, r)
				found = true
			}
		}
		if s.SnapshotId != nil && !found {
			faults = append(faults, cnstypes.CnsSnapshotQueryResultEntry{Error: snapshotNotFound(id, s.SnapshotId.Id)})
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	out := make([]cnstypes.CnsSnapshotQueryResultEntry, 0, len(recs)+len(faults))
	for _, r := range recs {
		out = append(out, cnstypes.CnsSnapshotQueryResultEntry{Snapshot: r.cns})
	}
	return append(out, faults...)
}

// sortSnapshots puts a volume's snapshots in creation order.
func sortSnapshots(list []*snapshotRec) {
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
}

// snapshotCount is how many snapshots the volume has.
func (m *volumeManager) snapshotCount(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.snaps[id])
}

// snapshotSource finds the snapshot a create spec restores, if any: nil
// without a CnsSnapshotVolumeSource, a fault when it does not exist or is
// larger than the new volume.
// The source volume stays locked (no snapshot deleted under the copy)
// until the caller calls unlock, which is never nil.
func (m *volumeManager) snapshotSource(spec cnstypes.CnsVolumeCreateSpec, sizeMB int64) (_ *snapshotRec, unlock func(), _ *types.LocalizedMethodFault) {
	unlock = func() {}
	src, ok := spec.VolumeSource.(*cnstypes.CnsSnapshotVolumeSource)
	if !ok || src == nil {
		if spec.VolumeSource != nil {
			return nil, unlock, cnsFault("Failed to create volume %s: volume source %T is not supported", spec.Name, spec.VolumeSource)
		}
		return nil, unlock, nil
	}
	unlock = m.volLocks.lock(src.VolumeId.Id)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.snaps[src.VolumeId.Id] {
		if r.cns.SnapshotId.Id == src.SnapshotId.Id {
			if r.sizeMB > sizeMB {
				return nil, unlock, cnsFault("Failed to create volume %s: %d MB is smaller than snapshot %s (%d MB)", spec.Name, sizeMB, src.SnapshotId.Id, r.sizeMB)
			}
			return r, unlock, nil
		}
	}
	return nil, unlock, snapshotNotFound(src.VolumeId.Id, src.SnapshotId.Id)
}

// fillFromSnapshot makes the new volume's data file a copy of the
// snapshot's, at the new volume's size.
func fillFromSnapshot(v *volume, src *snapshotRec) error {
	if err := copySparse(src.file, v.flatFile); err != nil {
		return err
	}
	return os.Truncate(v.flatFile, v.sizeMB*mib)
}

func snapshotNotFound(volumeID, snapID string) *types.LocalizedMethodFault {
	msg := fmt.Sprintf("snapshot %s of volume %s not found", snapID, volumeID)
	return localized(&cnstypes.CnsSnapshotNotFoundFault{
		CnsFault:   cnstypes.CnsFault{Reason: msg},
		VolumeId:   cnstypes.CnsVolumeId{Id: volumeID},
		SnapshotId: cnstypes.CnsSnapshotId{Id: snapID},
	}, msg)
}

// hasSnapshots is the fault of deleting or extending a volume that has
// snapshots (vSphere refuses both).
func hasSnapshots(op, id string, n int) *types.LocalizedMethodFault {
	return cnsFault("Failed to %s volume %s: the volume has snapshots (%d); delete them first", op, id, n)
}

// copySparse copies src to dst (created or truncated) keeping holes: only
// the data extents (SEEK_DATA/SEEK_HOLE) are read and written, so a 5 GiB
// volume with a few MiB written copies a few MiB.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	size := st.Size()
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	if err := copyExtents(in, out, size); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

func copyExtents(in, out *os.File, size int64) error {
	var off int64
	for off < size {
		start, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // no data past off
		}
		if errors.Is(err, syscall.EINVAL) {
			start = off // no SEEK_DATA here: copy the rest
		} else if err != nil {
			return err
		}
		end, err := in.Seek(start, seekHole)
		if err != nil {
			end = size
		}
		if _, err := in.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(start, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, end-start); err != nil {
			return err
		}
		off = end
	}
	return nil
}
