package driver

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// DefaultMaxSnapshotsPerVolume is the upstream driver's default
// (global-max-snapshots-per-block-volume = 3): VMware advises no more than
// a few snapshots per disk, each one a delta disk that every write and read
// goes through. vSphere's own limit is 32.
const DefaultMaxSnapshotsPerVolume = 3

// MaxSnapshotsLimit is vSphere's limit of snapshots per first-class disk.
const MaxSnapshotsLimit = 32

// snapshotIDSep joins a snapshot ID: "<volume ID>+<CNS snapshot ID>", the
// upstream driver's format, so that a snapshot ID names its volume.
const snapshotIDSep = "+"

func snapshotID(volumeID, cnsSnapshotID string) string {
	return volumeID + snapshotIDSep + cnsSnapshotID
}

// parseSnapshotID splits a snapshot ID; ok is false for an ID this driver
// did not make.
func parseSnapshotID(id string) (volumeID, cnsSnapshotID string, ok bool) {
	volumeID, cnsSnapshotID, ok = strings.Cut(id, snapshotIDSep)
	return volumeID, cnsSnapshotID, ok && volumeID != "" && cnsSnapshotID != ""
}

// maxSnapshots is the most snapshots a volume on the datastore of that URL
// may have, and what sets it: the limit for its datastore's type (vSAN,
// vVols: csi-vsphere.conf [Snapshot] granular-max-...) where one is set,
// else the driver's (--max-snapshots-per-volume, else [Snapshot]
// global-max-snapshots-per-block-volume, else 3).
func (d *Driver) maxSnapshots(datastoreURL string) (int, string) {
	switch {
	case d.opts.MaxSnapshotsVSAN > 0 && strings.HasPrefix(datastoreURL, "ds:///vmfs/volumes/vsan:"):
		return d.opts.MaxSnapshotsVSAN, "granular-max-snapshots-per-block-volume-vsan"
	case d.opts.MaxSnapshotsVVOL > 0 && strings.HasPrefix(datastoreURL, "ds:///vmfs/volumes/vvol:"):
		return d.opts.MaxSnapshotsVVOL, "granular-max-snapshots-per-block-volume-vvol"
	case d.opts.MaxSnapshotsPerVolume > 0:
		return d.opts.MaxSnapshotsPerVolume, "--max-snapshots-per-volume or global-max-snapshots-per-block-volume"
	}
	return DefaultMaxSnapshotsPerVolume, "the default"
}

// CreateSnapshot takes a CNS snapshot of the source volume. The CSI name
// is the CNS snapshot's description, by which a retry finds it. At most
// --max-snapshots-per-volume per volume.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, src := req.GetName(), req.GetSourceVolumeId()
	switch {
	case name == "":
		return nil, status.Error(codes.InvalidArgument, "name is required")
	case src == "":
		return nil, status.Error(codes.InvalidArgument, "source_volume_id is required")
	}
	src, err := d.inTreeVolume(ctx, src, true) // intree.go
	if err != nil {
		return nil, toStatus(err)
	}
	// Not the volume's own key: publishing it goes on meanwhile.
	release, err := d.inflight.acquireAll(snapshotNameKey(name), snapshotsKey(src))
	if err != nil {
		return nil, err
	}
	// Taking the snapshot goes on when the caller gives up, guarded, so a
	// retry never takes a second one (finish, inflight.go).
	return finish(ctx, release, "CreateSnapshot "+name, func(ctx context.Context) (*csi.CreateSnapshotResponse, error) {
		resp, err := d.createSnapshot(ctx, name, src)
		return resp, toStatus(err)
	})
}

func (d *Driver) createSnapshot(ctx context.Context, name, src string) (*csi.CreateSnapshotResponse, error) {
	vol, err := d.vc.Volume(ctx, src)
	if err != nil {
		return nil, toStatus(err)
	}
	if vol.File {
		return nil, status.Errorf(codes.FailedPrecondition,
			"volume %s is a ReadWriteMany file volume (a vSAN file share): CNS snapshots are for block volumes only", src)
	}
	// The volume's snapshots (one query of this volume, whatever else
	// vCenter holds) answer "is it taken already" and "how many".
	own, _, err := d.vc.Snapshots(ctx, vcenter.SnapshotFilter{VolumeID: src}, 0, 0)
	if err != nil {
		return nil, toStatus(err)
	}
	for _, s := range own {
		if s.Description == name {
			s.SizeBytes = vol.CapacityBytes
			klog.V(2).InfoS("Snapshot exists already", "name", name, "snapshotID", snapshotID(s.VolumeID, s.ID))
			d.snapNames.add(name, s.VolumeID, s.ID)
			return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
		}
	}
	// A name is the cluster's: taken by another volume's snapshot?
	if other, err := d.snapNames.volumeOf(ctx, d.vc, name); err != nil {
		return nil, toStatus(err)
	} else if other != "" && other != src {
		return nil, status.Errorf(codes.AlreadyExists,
			"snapshot %q exists already, of volume %s, not of volume %s", name, other, src)
	}
	count := len(own)
	if limit, by := d.maxSnapshots(vol.DatastoreURL); count >= limit {
		return nil, status.Errorf(codes.FailedPrecondition,
			"volume %s has %d snapshots, the most this driver allows per volume (%d, %s): delete one of its VolumeSnapshots first",
			src, count, limit, by)
	}
	s, err := d.vc.CreateSnapshot(ctx, src, name)
	if err != nil {
		return nil, toStatus(err)
	}
	s.SizeBytes = vol.CapacityBytes
	d.snapNames.add(name, s.VolumeID, s.ID)
	klog.InfoS("Created snapshot", "name", name, "volumeID", src, "snapshotID", snapshotID(s.VolumeID, s.ID))
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
}

func csiSnapshot(s vcenter.Snapshot) *csi.Snapshot {
	out := &csi.Snapshot{
		SnapshotId:     snapshotID(s.VolumeID, s.ID),
		SourceVolumeId: s.VolumeID,
		SizeBytes:      s.SizeBytes,
		ReadyToUse:     true, // CNS snapshots are usable once the task ends
	}
	if !s.CreateTime.IsZero() {
		out.CreationTime = timestamppb.New(s.CreateTime)
	}
	return out
}

// DeleteSnapshot deletes a CNS snapshot; one already gone (or an ID this
// driver never made) is success.
func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	}
	volID, snapID, ok := parseSnapshotID(id)
	if !ok {
		klog.V(2).InfoS("Not a snapshot ID of this driver, nothing to delete", "snapshotID", id)
		return &csi.DeleteSnapshotResponse{}, nil
	}
	release, err := d.inflight.acquire(snapshotsKey(volID))
	if err != nil {
		return nil, err
	}
	defer release()
	err = d.vc.DeleteSnapshot(ctx, volID, snapID)
	if err == nil || errors.Is(err, vcenter.ErrSnapshotNotFound) || errors.Is(err, vcenter.ErrVolumeNotFound) {
		d.snapNames.remove(volID, snapID)
	}
	switch {
	case err == nil:
		klog.InfoS("Deleted snapshot", "snapshotID", id)
	case errors.Is(err, vcenter.ErrSnapshotNotFound), errors.Is(err, vcenter.ErrVolumeNotFound):
		klog.V(2).InfoS("Snapshot already gone", "snapshotID", id)
	default:
		return nil, toStatus(err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots pages through the snapshots, all of them or those of one
// volume or one snapshot ID. The token is the offset of the next page.
func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	offset, limit, err := listPaging(req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	var f vcenter.SnapshotFilter
	if id := req.GetSnapshotId(); id != "" {
		volID, snapID, ok := parseSnapshotID(id)
		if !ok || (req.GetSourceVolumeId() != "" && req.GetSourceVolumeId() != volID) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		f = vcenter.SnapshotFilter{VolumeID: volID, SnapshotID: snapID}
	} else if v := req.GetSourceVolumeId(); v != "" {
		f.VolumeID = v
	}
	snaps, next, err := d.vc.Snapshots(ctx, f, offset, limit)
	if err != nil {
		return nil, toStatus(err)
	}
	if offset > 0 && len(snaps) == 0 {
		// A token past the end is not one we gave out (as ListVolumes).
		if all, _, err := d.vc.Snapshots(ctx, f, 0, 0); err == nil && int64(len(all)) < offset {
			return nil, status.Errorf(codes.Aborted, "starting_token %q is past the last snapshot", req.GetStartingToken())
		}
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, s := range snaps {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(s)})
	}
	if next != 0 {
		resp.NextToken = strconv.FormatInt(next, 10)
	}
	return resp, nil
}

// contentSource is what a CreateVolume copies: a snapshot or a volume.
type contentSource struct {
	volumeID   string
	snapshotID string // the CNS snapshot ID; empty for a clone
	sizeBytes  int64  // the source's size: the least the new volume may have
	csiSnap    string // the CSI snapshot ID, as asked
}

// volumeSource checks a CreateVolume's content source (nil: none) and
// reads the size the new volume must at least have.
func (d *Driver) volumeSource(ctx context.Context, cs *csi.VolumeContentSource) (*contentSource, error) {
	switch {
	case cs == nil:
		return nil, nil
	case cs.GetSnapshot() != nil:
		id := cs.GetSnapshot().GetSnapshotId()
		volID, snapID, ok := parseSnapshotID(id)
		if !ok {
			return nil, status.Errorf(codes.NotFound, "snapshot %q not found: not a snapshot ID of this driver (<volume ID>+<snapshot ID>)", id)
		}
		snaps, _, err := d.vc.Snapshots(ctx, vcenter.SnapshotFilter{VolumeID: volID, SnapshotID: snapID}, 0, 0)
		if err != nil {
			return nil, toStatus(err)
		}
		if len(snaps) == 0 {
			return nil, status.Errorf(codes.NotFound, "snapshot %s not found", id)
		}
		return &contentSource{volumeID: volID, snapshotID: snapID, sizeBytes: snaps[0].SizeBytes, csiSnap: id}, nil
	case cs.GetVolume() != nil:
		id, err := d.inTreeVolume(ctx, cs.GetVolume().GetVolumeId(), true) // intree.go
		if err != nil {
			return nil, toStatus(err)
		}
		vol, err := d.vc.Volume(ctx, id)
		if errors.Is(err, vcenter.ErrVolumeNotFound) {
			return nil, status.Errorf(codes.NotFound, "source volume %s not found", id)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		if vol.File {
			return nil, status.Errorf(codes.FailedPrecondition,
				"source volume %s is a ReadWriteMany file volume (a vSAN file share): only block volumes can be cloned", id)
		}
		return &contentSource{volumeID: id, sizeBytes: vol.CapacityBytes}, nil
	}
	return nil, status.Error(codes.InvalidArgument, "volume_content_source names neither a snapshot nor a volume")
}

// kind names the source for messages.
func (s *contentSource) kind() string {
	if s.snapshotID != "" {
		return "snapshot"
	}
	return "volume (a clone)"
}

// sourceSize is the new volume's size given its source: at least the
// source's; asking explicitly for less is OutOfRange.
func (s *contentSource) sourceSize(size int64, r *csi.CapacityRange) (int64, error) {
	if s == nil || size >= s.sizeBytes {
		return size, nil
	}
	if r.GetRequiredBytes() == 0 && (r.GetLimitBytes() == 0 || r.GetLimitBytes() >= s.sizeBytes) {
		return s.sizeBytes, nil // nothing asked: the source's size
	}
	return 0, status.Errorf(codes.OutOfRange,
		"the volume would have %s, less than its source's %s", describeSize(size), describeSize(s.sizeBytes))
}

// toCSI is the content source a CreateVolume response repeats.
func (s *contentSource) toCSI() *csi.VolumeContentSource {
	switch {
	case s == nil:
		return nil
	case s.snapshotID != "":
		return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: s.csiSnap}}}
	}
	return &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
		Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: s.volumeID}}}
}
