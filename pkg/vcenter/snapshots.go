package vcenter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// Snapshot is a CNS snapshot of a block volume.
type Snapshot struct {
	ID          string // the CNS snapshot ID (unique per volume)
	VolumeID    string
	Description string // what the driver named it (the CSI snapshot name)
	CreateTime  time.Time
	// SizeBytes is the volume's capacity: CNS does not report a snapshot's
	// own size. Filled by CreateSnapshot and Snapshots.
	SizeBytes int64
}

// SnapshotFilter selects snapshots: this cluster's (both empty: the
// snapshots of the cluster's volumes, never another cluster's), one
// volume's, or one snapshot of one volume.
type SnapshotFilter struct {
	VolumeID   string
	SnapshotID string // needs VolumeID
}

// Snapshot errors; the driver maps them with errors.Is like the others.
var (
	ErrSnapshotNotFound = errors.New("snapshot not found")
	// ErrHasSnapshots: a volume with snapshots can't be deleted.
	ErrHasSnapshots = errors.New("volume has snapshots")
)

// snapshotQueryPage is the page size of a snapshot query.
const snapshotQueryPage = 500

// CreateSnapshot takes a CNS snapshot of the volume (CnsCreateSnapshots)
// described as description, exactly once: as CreateVolume does with names
// (volumes.go), it settles the tasks in doubt and, after waiting for any
// or after an attempt whose outcome is unknown, looks for a snapshot of
// the volume with that description before it takes one.
func (c *client) CreateSnapshot(ctx context.Context, volumeID, description string) (Snapshot, error) {
	direct := false
	for attempt := 1; ; attempt++ {
		waited, err := c.settle(ctx, direct, opOn(opid.Snapshot, snapshotKey(volumeID, description)))
		if err != nil {
			return Snapshot{}, err
		}
		if waited > 0 || attempt > 1 {
			s, found, err := c.snapshotDescribed(ctx, volumeID, description)
			if err != nil {
				return Snapshot{}, err
			}
			if found {
				klog.InfoS("Snapshot found by its description after settling", "volumeID", volumeID, "name", description, "snapshotID", s.ID)
				return s, nil
			}
		}
		s, err := c.createSnapshotOnce(ctx, volumeID, description)
		if err == nil || attempt >= createAttempts || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
			return s, err
		}
		direct = errors.Is(err, errUncertain) || errors.Is(err, errTaskLost)
		klog.InfoS("Taking the snapshot: outcome unknown or vCenter busy; settling and looking again", "volumeID", volumeID, "name", description, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return Snapshot{}, err
		case <-time.After(backoff(attempt)):
		}
	}
}

// snapshotDescribed finds the volume's snapshot with that description.
func (c *client) snapshotDescribed(ctx context.Context, volumeID, description string) (Snapshot, bool, error) {
	all, _, err := c.Snapshots(ctx, SnapshotFilter{VolumeID: volumeID}, 0, 0)
	if err != nil {
		return Snapshot{}, false, err
	}
	for _, s := range all {
		if s.Description == description {
			return s, true, nil
		}
	}
	return Snapshot{}, false, nil
}

func (c *client) createSnapshotOnce(ctx context.Context, volumeID, description string) (Snapshot, error) {
	spec := cnstypes.CnsSnapshotCreateSpec{VolumeId: cnstypes.CnsVolumeId{Id: volumeID}, Description: description}
	r, err := c.runCNS(ctx, opid.Snapshot, snapshotKey(volumeID, description), ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.CreateSnapshots(ctx, []cnstypes.CnsSnapshotCreateSpec{spec})
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot volume %s: %w", volumeID, err)
	}
	cr, ok := r.(*cnstypes.CnsSnapshotCreateResult)
	if !ok || cr.Snapshot.SnapshotId.Id == "" {
		return Snapshot{}, fmt.Errorf("snapshot volume %s: vCenter returned no snapshot (%T)", volumeID, r)
	}
	s := toSnapshot(cr.Snapshot)
	if s.VolumeID == "" {
		s.VolumeID = volumeID
	}
	klog.V(4).InfoS("Snapshot created", "volumeID", volumeID, "snapshotID", s.ID, "name", description)
	return s, nil
}

// DeleteSnapshot deletes one snapshot (CnsDeleteSnapshots);
// ErrSnapshotNotFound when the volume or the snapshot does not exist.
func (c *client) DeleteSnapshot(ctx context.Context, volumeID, snapshotID string) error {
	spec := cnstypes.CnsSnapshotDeleteSpec{VolumeId: cnstypes.CnsVolumeId{Id: volumeID}, SnapshotId: cnstypes.CnsSnapshotId{Id: snapshotID}}
	_, err := c.runCNSAgain(ctx, opid.Unsnap, volumeID, ErrSnapshotNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.DeleteSnapshots(ctx, []cnstypes.CnsSnapshotDeleteSpec{spec})
	})
	if err != nil {
		return fmt.Errorf("delete snapshot %s of volume %s: %w", snapshotID, volumeID, err)
	}
	klog.V(4).InfoS("Snapshot deleted", "volumeID", volumeID, "snapshotID", snapshotID)
	return nil
}

// Snapshots pages through the snapshots the filter selects
// (CnsQuerySnapshots), in a stable order, with each snapshot's size read
// from its volume in one CNS volume query for the whole page. offset is
// where the page starts, next is 0 when there is no more; limit <= 0 means
// all. A volume or snapshot that does not exist selects nothing.
func (c *client) Snapshots(ctx context.Context, f SnapshotFilter, offset, limit int64) ([]Snapshot, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("%w: offset %d", ErrInvalidArgument, offset)
	}
	if f.SnapshotID != "" && f.VolumeID == "" {
		return nil, 0, fmt.Errorf("%w: a snapshot ID needs its volume ID", ErrInvalidArgument)
	}
	if f.VolumeID == "" {
		return c.clusterSnapshots(ctx, offset, limit)
	}
	qs := cnstypes.CnsSnapshotQuerySpec{VolumeId: cnstypes.CnsVolumeId{Id: f.VolumeID}}
	if f.SnapshotID != "" {
		qs.SnapshotId = &cnstypes.CnsSnapshotId{Id: f.SnapshotID}
	}
	out, next, err := c.snapshotPages(ctx, cnstypes.CnsSnapshotQueryFilter{SnapshotQuerySpecs: []cnstypes.CnsSnapshotQuerySpec{qs}}, offset, limit)
	if err != nil {
		return nil, 0, err
	}
	if err := c.sizeSnapshots(ctx, out); err != nil {
		return nil, 0, err
	}
	return out, next, nil
}

// snapshotQueryVolumes is how many volumes one snapshot query names when
// the cluster's snapshots are listed.
const snapshotQueryVolumes = 100

// clusterSnapshots pages through the snapshots of this cluster's volumes:
// the cluster's block volumes (CnsQueryVolume by cluster ID), then their
// snapshots, snapshotQueryVolumes volumes a query. What it costs grows
// with this cluster's volumes, not with what other clusters have. The
// order is the volumes' (ListVolumes), then each volume's snapshots'.
func (c *client) clusterSnapshots(ctx context.Context, offset, limit int64) ([]Snapshot, int64, error) {
	vols, _, err := c.ListVolumes(ctx, 0, 0)
	if err != nil {
		return nil, 0, err
	}
	size := map[string]int64{}
	var specs []cnstypes.CnsSnapshotQuerySpec
	for _, v := range vols {
		if !v.File {
			size[v.ID] = v.CapacityBytes
			specs = append(specs, cnstypes.CnsSnapshotQuerySpec{VolumeId: cnstypes.CnsVolumeId{Id: v.ID}})
		}
	}
	var all []Snapshot
	for len(specs) > 0 {
		n := min(len(specs), snapshotQueryVolumes)
		page, _, err := c.snapshotPages(ctx, cnstypes.CnsSnapshotQueryFilter{SnapshotQuerySpecs: specs[:n]}, 0, 0)
		if err != nil {
			return nil, 0, err
		}
		all = append(all, page...)
		specs = specs[n:]
	}
	for i := range all {
		all[i].SizeBytes = size[all[i].VolumeID]
	}
	total := int64(len(all))
	if offset >= total {
		return nil, 0, nil
	}
	end := total
	if limit > 0 {
		end = min(total, offset+limit)
	}
	next := end
	if end >= total {
		next = 0
	}
	return all[offset:end], next, nil
}

// snapshotPages runs a snapshot query from offset, page by page, until
// limit snapshots (limit <= 0: all). A volume or snapshot that does not
// exist selects nothing.
func (c *client) snapshotPages(ctx context.Context, qf cnstypes.CnsSnapshotQueryFilter, offset, limit int64) ([]Snapshot, int64, error) {
	var out []Snapshot
	next := offset
	for {
		ask := int64(snapshotQueryPage)
		if limit > 0 {
			ask = limit - int64(len(out))
		}
		qf.Cursor = &cnstypes.CnsCursor{Offset: next, Limit: ask}
		res, err := c.querySnapshots(ctx, qf)
		if err != nil {
			if errors.Is(err, ErrSnapshotNotFound) || errors.Is(err, ErrVolumeNotFound) {
				return nil, 0, nil
			}
			return nil, 0, err
		}
		var page []Snapshot
		for _, e := range res.Entries {
			if e.Error != nil {
				// CNS reports an unknown volume or snapshot in the entry.
				if err := mapFault(localizedError(e.Error), ErrSnapshotNotFound); errors.Is(err, ErrSnapshotNotFound) || errors.Is(err, ErrVolumeNotFound) {
					continue
				} else {
					return nil, 0, fmt.Errorf("query snapshots: %w", err)
				}
			}
			page = append(page, toSnapshot(e.Snapshot))
		}
		out = append(out, page...)
		cur := res.Cursor
		switch {
		case cur.TotalRecords > 0 && cur.Offset > next && cur.Offset < cur.TotalRecords:
			next = cur.Offset
		default:
			next = 0
		}
		if next == 0 || (limit > 0 && int64(len(out)) >= limit) {
			break
		}
	}
	return out, next, nil
}

func (c *client) querySnapshots(ctx context.Context, qf cnstypes.CnsSnapshotQueryFilter) (*cnstypes.CnsSnapshotQueryResult, error) {
	began := time.Now()
	out, ref, err := c.runTask(ctx, opid.QuerySnaps, "", ErrSnapshotNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.QuerySnapshots(ctx, qf)
	})
	if o, ok := c.tasks.obs.(CNSObserver); ok {
		o.CNSOperation(cnsMethod(opid.QuerySnaps), err != nil, time.Since(began))
	}
	if err != nil {
		return nil, fmt.Errorf("query snapshots: %w", mapFault(err, ErrSnapshotNotFound))
	}
	res := snapshotResult(out.result)
	if res == nil {
		if got, ferr := c.fetchTask(ctx, ref); ferr == nil {
			res = snapshotResult(got.result)
		}
	}
	if res == nil {
		return nil, fmt.Errorf("query snapshots: task %s returned no result", ref.Value)
	}
	return res, nil
}

func snapshotResult(r any) *cnstypes.CnsSnapshotQueryResult {
	switch r := r.(type) {
	case cnstypes.CnsSnapshotQueryResult:
		return &r
	case *cnstypes.CnsSnapshotQueryResult:
		return r
	}
	return nil
}

// sizeSnapshots fills SizeBytes from the snapshots' volumes, one query.
func (c *client) sizeSnapshots(ctx context.Context, snaps []Snapshot) error {
	if len(snaps) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var ids []cnstypes.CnsVolumeId
	for _, s := range snaps {
		if !seen[s.VolumeID] {
			seen[s.VolumeID] = true
			ids = append(ids, cnstypes.CnsVolumeId{Id: s.VolumeID})
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Id < ids[j].Id })
	res, err := c.query(ctx, cnstypes.CnsQueryFilter{VolumeIds: ids})
	if err != nil {
		return fmt.Errorf("query the snapshots' volumes: %w", err)
	}
	size := map[string]int64{}
	for _, v := range c.toVolumes(res.Volumes) {
		size[v.ID] = v.CapacityBytes
	}
	for i := range snaps {
		snaps[i].SizeBytes = size[snaps[i].VolumeID]
	}
	return nil
}

func toSnapshot(s cnstypes.CnsSnapshot) Snapshot {
	return Snapshot{
		ID:          s.SnapshotId.Id,
		VolumeID:    s.VolumeId.Id,
		Description: s.Description,
		CreateTime:  s.CreateTime,
	}
}

// ExtendVolume grows the volume to capacityBytes, rounded up to a whole
// MiB (CnsExtendVolume). The caller checks the current size first: CNS
// refuses to shrink.
func (c *client) ExtendVolume(ctx context.Context, volumeID string, capacityBytes int64) error {
	if capacityBytes <= 0 {
		return fmt.Errorf("%w: capacity %d bytes", ErrInvalidArgument, capacityBytes)
	}
	sizeMB := (capacityBytes + mib - 1) / mib
	spec := cnstypes.CnsVolumeExtendSpec{VolumeId: cnstypes.CnsVolumeId{Id: volumeID}, CapacityInMb: sizeMB}
	_, err := c.runCNSAgain(ctx, opid.Extend, volumeID, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{spec})
	})
	if err != nil {
		return fmt.Errorf("extend volume %s to %d MiB: %w", volumeID, sizeMB, err)
	}
	klog.InfoS("Volume extended", "volumeID", volumeID, "sizeMB", sizeMB)
	return nil
}

// snapshotKey is the object key of a snapshot in operation IDs: its
// volume and description.
func snapshotKey(volumeID, description string) string { return volumeID + "/" + description }

// CloneSnapshotDescription is the description of the transient snapshot
// a clone named name is made from. One name, one description: a retried
// clone finds what an interrupted attempt left.
func CloneSnapshotDescription(name string) string { return cloneSnapshotPrefix + name }

// cloneLeftovers picks from snaps the transient snapshots of the clone
// named name, or of any clone when name is "": the driver's own, never a
// VolumeSnapshot's.
func cloneLeftovers(snaps []Snapshot, name string) []Snapshot {
	var out []Snapshot
	for _, s := range snaps {
		if (name == "" && strings.HasPrefix(s.Description, cloneSnapshotPrefix)) || s.Description == CloneSnapshotDescription(name) {
			out = append(out, s)
		}
	}
	return out
}

const cloneSnapshotPrefix = "clone source of "

// cloneVolume makes a full copy of a volume the way CNS offers it: a
// snapshot of the source, a volume created from that snapshot
// (CnsSnapshotVolumeSource, not a linked clone, so it does not depend on
// the snapshot), then the snapshot deleted. A transient snapshot that an
// interrupted earlier attempt of this clone left is used instead of a new
// one (so it is deleted too). If the last step fails the snapshot stays
// (logged with its ID) and the clone is made all the same; the next
// CreateVolume of that name deletes it (the driver's idempotent path).
func (c *client) cloneVolume(ctx context.Context, spec CreateSpec) (Volume, error) {
	desc := CloneSnapshotDescription(spec.Name)
	// An earlier controller may still be making this clone: let its tasks
	// end, then look again (CreateVolume).
	if waited, err := c.settle(ctx, false, opOn(opid.Create, spec.Name),
		opOn(opid.Snapshot, snapshotKey(spec.SourceVolumeID, desc))); err != nil {
		return Volume{}, err
	} else if waited > 0 {
		if vol, err := c.FindVolumeByName(ctx, spec.Name); err == nil {
			vol.Existing = true
			c.DropCloneLeftovers(ctx, spec.SourceVolumeID, spec.Name)
			return vol, nil
		}
	}
	all, _, err := c.Snapshots(ctx, SnapshotFilter{VolumeID: spec.SourceVolumeID}, 0, 0)
	if err != nil {
		return Volume{}, fmt.Errorf("clone volume %s: %w", spec.SourceVolumeID, err)
	}
	left := cloneLeftovers(all, spec.Name)
	var snap Snapshot
	if len(left) > 0 {
		snap = left[0]
		klog.InfoS("Clone uses the transient snapshot an interrupted attempt left", "name", spec.Name,
			"volumeID", spec.SourceVolumeID, "snapshotID", snap.ID)
	} else if snap, err = c.CreateSnapshot(ctx, spec.SourceVolumeID, desc); err != nil {
		return Volume{}, fmt.Errorf("clone volume %s: %w", spec.SourceVolumeID, err)
	}
	spec.SourceSnapshotID = snap.ID
	vol, err := c.CreateVolume(ctx, spec)
	if vol.Existing {
		// Made by an earlier attempt, which may have left its snapshot.
		c.DropCloneLeftovers(context.WithoutCancel(ctx), spec.SourceVolumeID, spec.Name)
	}
	if derr := c.DeleteSnapshot(context.WithoutCancel(ctx), spec.SourceVolumeID, snap.ID); derr != nil && !errors.Is(derr, ErrSnapshotNotFound) {
		klog.ErrorS(derr, "Deleting the clone's transient snapshot failed; delete it by hand",
			"volumeID", spec.SourceVolumeID, "snapshotID", snap.ID)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("clone volume %s: %w", spec.SourceVolumeID, err)
	}
	return vol, nil
}

// DropCloneLeftovers: see Client.
func (c *client) DropCloneLeftovers(ctx context.Context, volumeID, name string) int {
	all, _, err := c.Snapshots(ctx, SnapshotFilter{VolumeID: volumeID}, 0, 0)
	if err != nil {
		klog.ErrorS(err, "Listing a volume's snapshots for clones' leftovers failed", "volumeID", volumeID, "name", name)
		return -1
	}
	left := cloneLeftovers(all, name)
	others := len(all) - len(left)
	for _, s := range left {
		if err := c.DeleteSnapshot(ctx, volumeID, s.ID); err != nil && !errors.Is(err, ErrSnapshotNotFound) {
			klog.ErrorS(err, "Deleting a clone's leftover transient snapshot failed", "volumeID", volumeID, "snapshotID", s.ID)
			others++ // still there
			continue
		}
		klog.InfoS("Deleted a clone's leftover transient snapshot", "volumeID", volumeID, "snapshotID", s.ID, "description", s.Description)
	}
	return others
}
