package driver

import (
	"context"
	"errors"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// ControllerExpandVolume grows the volume's disk through CNS (online: the
// disk may be attached; vSphere grows it in the running VM). A mount
// volume then needs its filesystem grown on the node (NodeExpandVolume,
// or NodeStage when the volume is not staged); a raw block volume does not.
//
// It reads the volume once (one CNS query) to answer a repeated request
// without a second extend, and to refuse shrinking with OutOfRange.
func (d *Driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := validateCapability(c); err != nil {
			return nil, err
		}
	}
	size, err := expandBytes(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	if id, err = d.inTreeVolume(ctx, id, true); err != nil { // intree.go
		return nil, toStatus(err)
	}
	release, err := d.inflight.acquireAll(volumeKey(id), snapshotsKey(id))
	if err != nil {
		return nil, err
	}
	defer release()

	vol, err := d.vc.Volume(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	// A file volume's quota grows on the server; nodes see it in statfs.
	nodeExpansion := req.GetVolumeCapability().GetBlock() == nil && !vol.File
	limit := req.GetCapacityRange().GetLimitBytes()
	switch {
	case limit > 0 && vol.CapacityBytes > limit:
		return nil, status.Errorf(codes.OutOfRange,
			"volume %s already has %s, more than limit_bytes %d: volumes can't shrink", id, describeSize(vol.CapacityBytes), limit)
	case vol.CapacityBytes > size:
		return nil, status.Errorf(codes.OutOfRange,
			"volume %s has %s; shrinking it to %s is not supported", id, describeSize(vol.CapacityBytes), describeSize(size))
	case vol.CapacityBytes == size:
		klog.V(2).InfoS("Volume already has the requested size", "volumeID", id, "size", describeSize(size))
		return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: nodeExpansion}, nil
	}
	err = d.vc.ExtendVolume(ctx, id, size)
	switch {
	case errors.Is(err, vcenter.ErrHasSnapshots):
		return nil, toStatus(hint(err, "volume %s has snapshots, and vSphere can't grow a disk that has snapshots: delete its VolumeSnapshots first", id))
	case errors.Is(err, vcenter.ErrInsufficientSpace):
		return nil, toStatus(hint(err, "the datastore of volume %s (%s) has no room to grow it to %s", id, vol.DatastoreURL, describeSize(size)))
	case err != nil:
		return nil, toStatus(err)
	}
	klog.InfoS("Expanded volume", "volumeID", id, "from", describeSize(vol.CapacityBytes), "to", describeSize(size),
		"nodeExpansionRequired", nodeExpansion)
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: nodeExpansion}, nil
}

// expandBytes is the size a ControllerExpandVolume asks for: a capacity
// range is required, then it is read as CreateVolume reads one.
func expandBytes(r *csi.CapacityRange) (int64, error) {
	if r.GetRequiredBytes() == 0 && r.GetLimitBytes() == 0 {
		return 0, status.Error(codes.InvalidArgument, "capacity_range is required")
	}
	return capacityBytes(r)
}
