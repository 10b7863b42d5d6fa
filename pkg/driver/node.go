package driver

import (
	"context"
	"errors"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
)

// The node service: it turns an attached disk into a mounted filesystem
// (or a raw block device) for the pods of this node VM, and back. What it
// does to the machine goes through d.mounter (pkg/node).

// NodeStageVolume makes an attached block volume ready on this node: it
// finds the disk by the UUID the controller published, formats it if and
// only if it is blank, and mounts it at the staging path (a raw block
// volume: nothing to mount). A file volume has nothing to stage.
func (d *Driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	volID, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := requireFields(volID, "staging_target_path", staging); err != nil {
		return nil, err
	}
	c := req.GetVolumeCapability()
	if err := validateCapability(c); err != nil {
		return nil, err
	}
	if fileOnNode(volID, req.GetPublishContext()) {
		// A file volume is mounted from its NFS server at each target.
		klog.FromContext(ctx).V(2).Info("File volume: nothing to stage", "volumeID", volID)
		return &csi.NodeStageVolumeResponse{}, nil
	}
	if err := blockOnly(volID, c); err != nil {
		return nil, err
	}
	diskUUID, err := publishedDiskUUID(req.GetPublishContext())
	if err != nil {
		return nil, err
	}
	release, err := d.inflight.acquire(nodeKey(volID))
	if err != nil {
		return nil, err
	}
	defer release()

	dev, err := d.mounter.FindDevice(ctx, d.byIDDir(), diskUUID)
	if err != nil {
		return nil, toStatus(err)
	}
	log := klog.FromContext(ctx).WithValues("volumeID", volID, "device", dev.Path)
	if c.GetBlock() != nil {
		// Raw block: the device is there; publish binds it. Nothing to
		// mount: the disk is noted for NodeUnstage (notPublished).
		if err := node.RecordStagedDisk(staging, diskUUID); err != nil {
			return nil, toStatus(err)
		}
		log.V(2).Info("Block volume staged")
		return &csi.NodeStageVolumeResponse{}, nil
	}
	fsType := fsTypeOf(c)
	info, err := d.mounter.Inspect(staging)
	switch {
	case errors.Is(err, node.ErrPathNotFound):
	case err != nil:
		return nil, toStatus(err)
	case info.Mounted:
		gone, err := d.deviceGone(info)
		if err != nil {
			return nil, toStatus(err)
		}
		if gone {
			// The disk was hot-removed and came back as dev: the staging
			// mount is of a dead device. Stage again from the new one.
			log.Info("The staging mount is of a device no disk is any more; unmounting it to stage the disk's device again",
				"path", staging, "stale", info.Source)
			if err := d.mounter.Unmount(staging, false); err != nil {
				return nil, toStatus(err)
			}
			break
		}
		if !d.sameDevice(info.Source, dev.Path) {
			return nil, status.Errorf(codes.AlreadyExists,
				"staging_target_path %s already has %s mounted, not volume %s's device %s", staging, info.Source, volID, dev.Path)
		}
		if info.FSType != fsType {
			return nil, status.Errorf(codes.AlreadyExists,
				"volume %s is already staged at %s as %s, not %s", volID, staging, info.FSType, fsType)
		}
		log.V(2).Info("Volume already staged", "path", staging)
		return &csi.NodeStageVolumeResponse{}, nil
	}
	if err := d.mounter.FormatAndMount(ctx, dev.Path, staging, fsType, c.GetMount().GetMountFlags()); err != nil {
		return nil, toStatus(err)
	}
	log.Info("Volume staged", "path", staging, "fsType", fsType)
	return &csi.NodeStageVolumeResponse{}, nil
}

// NodeUnstageVolume unmounts the staging path (nothing mounted: success).
func (d *Driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	// The staging directory is the CO's: unmount, leave the directory. A
	// staging mount still bound into a pod's target is refused: unstaged,
	// the disk would be detached under a live mount (kubelet retries the
	// unstage after the unpublish).
	if err := d.unmount(ctx, req.GetVolumeId(), "staging_target_path", req.GetStagingTargetPath(), false, d.notPublished); err != nil {
		return nil, err
	}
	if err := node.ForgetStagedDisk(req.GetStagingTargetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// notPublished fails with FailedPrecondition when the filesystem mounted at
// staging is also mounted elsewhere (the bind mounts of NodePublish), or,
// for a raw block volume, when its device is still bound at a target.
func (d *Driver) notPublished(volID, staging string) error {
	of := staging
	if e, err := d.mounter.MountEntry(staging); err != nil || !e.Mounted {
		disk, err := node.StagedDisk(staging)
		if err != nil || disk == "" {
			return nil // nothing staged here: nothing to protect
		}
		if of, err = node.AttachedDevice(d.byIDDir(), disk); err != nil || of == "" {
			return nil // the disk is gone already
		}
	}
	refs, err := d.mounter.MountRefs(of)
	if err != nil {
		return toStatus(err)
	}
	for _, r := range refs {
		if !samePath(r, staging) {
			return status.Errorf(codes.FailedPrecondition,
				"volume %s is still published at %s: unpublish it (NodeUnpublishVolume) before unstaging, or the disk would be detached under a live mount", volID, r)
		}
	}
	return nil
}

// unmount unmounts path (named pathName in requests) under the volume's
// in-flight guard, removing it if asked; nothing mounted there is success.
// check, when set, may refuse first (under the guard).
func (d *Driver) unmount(ctx context.Context, volID, pathName, path string, remove bool, check ...func(volID, path string) error) error {
	if err := requireFields(volID, pathName, path); err != nil {
		return err
	}
	release, err := d.inflight.acquire(nodeKey(volID))
	if err != nil {
		return err
	}
	defer release()
	for _, c := range check {
		if err := c(volID, path); err != nil {
			return err
		}
	}
	if err := d.mounter.Unmount(path, remove); err != nil {
		return toStatus(err)
	}
	klog.FromContext(ctx).Info("Volume unmounted", "volumeID", volID, pathName, path)
	return nil
}

// NodePublishVolume puts the volume at a pod's target path: a bind mount of
// the staged filesystem (read-only if asked), the device itself for raw
// block, or an NFS mount of a file volume's share.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	volID, target, staging := req.GetVolumeId(), req.GetTargetPath(), req.GetStagingTargetPath()
	if err := requireFields(volID, "target_path", target); err != nil {
		return nil, err
	}
	c := req.GetVolumeCapability()
	if err := validateCapability(c); err != nil {
		return nil, err
	}
	if fileOnNode(volID, req.GetPublishContext()) {
		return d.publishNFS(ctx, req)
	}
	if err := blockOnly(volID, c); err != nil {
		return nil, err
	}
	if staging == "" {
		return nil, status.Error(codes.InvalidArgument,
			"staging_target_path is required: this driver stages volumes (NodeStageVolume) before publishing them")
	}
	if err := absolutePath("staging_target_path", staging); err != nil {
		return nil, err
	}
	readOnly := req.GetReadonly() ||
		c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	release, err := d.inflight.acquire(nodeKey(volID))
	if err != nil {
		return nil, err
	}
	defer release()

	if c.GetBlock() != nil {
		err = d.publishBlock(ctx, req, readOnly)
	} else {
		err = d.publishMount(ctx, req, readOnly)
	}
	if err != nil {
		return nil, err
	}
	klog.FromContext(ctx).Info("Volume published", "volumeID", volID, "path", target, "readOnly", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *Driver) publishMount(ctx context.Context, req *csi.NodePublishVolumeRequest, readOnly bool) error {
	volID, staging, target := req.GetVolumeId(), req.GetStagingTargetPath(), req.GetTargetPath()
	st, err := d.mounter.Inspect(staging)
	if errors.Is(err, node.ErrPathNotFound) || (err == nil && !st.Mounted) {
		return status.Errorf(codes.FailedPrecondition,
			"volume %s is not staged at %s: NodeStageVolume must come first", volID, staging)
	}
	if err != nil {
		return toStatus(err)
	}
	tg, err := d.mounter.Inspect(target)
	switch {
	case errors.Is(err, node.ErrPathNotFound):
	case err != nil:
		return toStatus(err)
	case tg.Mounted && tg.MountedDevice != st.MountedDevice:
		// A bind of a staging mount whose disk was hot-removed since (and
		// staged again from its new device): bind the live one instead.
		if gone, err := d.deviceGone(tg); err != nil || !gone {
			if err != nil {
				return toStatus(err)
			}
			return status.Errorf(codes.AlreadyExists,
				"target_path %s already has %s mounted, not volume %s", target, tg.Source, volID)
		}
		klog.FromContext(ctx).Info("The target is bound to a device no disk is any more; binding the staged volume again",
			"volumeID", volID, "path", target, "stale", tg.Source)
		if err := d.mounter.Unmount(target, false); err != nil {
			return toStatus(err)
		}
	case tg.Mounted:
		if !d.sameDevice(tg.Source, st.Source) {
			return status.Errorf(codes.AlreadyExists,
				"target_path %s already has %s mounted, not volume %s", target, tg.Source, volID)
		}
		if tg.ReadOnly != readOnly {
			return status.Errorf(codes.AlreadyExists,
				"volume %s is already published at %s with readonly=%t", volID, target, tg.ReadOnly)
		}
		return nil // already published
	case !tg.IsDir:
		return status.Errorf(codes.AlreadyExists, "target_path %s exists and is not a directory", target)
	}
	if err := d.checkSingleWriter(req, staging); err != nil {
		return err
	}
	return toStatus(d.mounter.BindMount(staging, target, readOnly, req.GetVolumeCapability().GetMount().GetMountFlags()))
}

func (d *Driver) publishBlock(ctx context.Context, req *csi.NodePublishVolumeRequest, readOnly bool) error {
	volID, target := req.GetVolumeId(), req.GetTargetPath()
	diskUUID, err := publishedDiskUUID(req.GetPublishContext())
	if err != nil {
		return err
	}
	dev, err := d.mounter.FindDevice(ctx, d.byIDDir(), diskUUID)
	if err != nil {
		return toStatus(err)
	}
	tg, err := d.mounter.Inspect(target)
	switch {
	case errors.Is(err, node.ErrPathNotFound):
	case err != nil:
		return toStatus(err)
	case tg.IsBlockDevice:
		if !d.sameDevice(target, dev.Path) {
			return status.Errorf(codes.AlreadyExists,
				"target_path %s already is another block device than volume %s's %s", target, volID, dev.Path)
		}
		if tg.ReadOnly != readOnly {
			return status.Errorf(codes.AlreadyExists,
				"volume %s is already published at %s with readonly=%t", volID, target, tg.ReadOnly)
		}
		return nil // already published
	case tg.Mounted:
		return status.Errorf(codes.AlreadyExists, "target_path %s already has %s mounted", target, tg.Source)
	}
	if err := d.checkSingleWriter(req, dev.Path); err != nil {
		return err
	}
	return toStatus(d.mounter.BindDevice(dev.Path, target, readOnly))
}

// checkSingleWriter refuses a second publish of a SINGLE_NODE_SINGLE_WRITER
// (ReadWriteOncePod) volume: of (the staging mount, or the device of a
// block volume) may be published at no other target. Other modes may be
// published at several targets of this node (pods sharing a RWO volume).
func (d *Driver) checkSingleWriter(req *csi.NodePublishVolumeRequest, of string) error {
	if req.GetVolumeCapability().GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		return nil
	}
	refs, err := d.mounter.MountRefs(of)
	if err != nil {
		return toStatus(err)
	}
	for _, r := range refs {
		if !samePath(r, req.GetTargetPath()) && !samePath(r, req.GetStagingTargetPath()) {
			return status.Errorf(codes.FailedPrecondition,
				"volume %s is already published at %s, and its access mode SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) allows one publish",
				req.GetVolumeId(), r)
		}
	}
	return nil
}

func samePath(a, b string) bool {
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(b); err == nil {
		b = rb
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// NodeUnpublishVolume unmounts the target path and removes it; an NFS
// mount is unmounted without being looked at (its server may be gone).
func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if nfs, err := d.nfsAt(req.GetVolumeId(), "target_path", req.GetTargetPath()); err != nil || nfs {
		if err != nil {
			return nil, err
		}
		return d.unpublishNFS(ctx, req)
	}
	// The target is the SP's to create and to remove.
	if err := d.unmount(ctx, req.GetVolumeId(), "target_path", req.GetTargetPath(), true); err != nil {
		return nil, err
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports a mounted volume's bytes and inodes (a raw
// block volume: its size) and its condition.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	volID, path := req.GetVolumeId(), req.GetVolumePath()
	if err := requireFields(volID, "volume_path", path); err != nil {
		return nil, err
	}
	if nfs, err := d.nfsAt(volID, "volume_path", path); err != nil || nfs {
		if err != nil {
			return nil, err
		}
		return d.nfsStats(ctx, volID, path)
	}
	info, err := d.mounter.Inspect(path)
	if err != nil {
		return nil, toStatus(err)
	}
	if info.IsBlockDevice {
		size, err := d.mounter.DeviceSize(path)
		if err != nil {
			return nil, toStatus(err)
		}
		return &csi.NodeGetVolumeStatsResponse{
			Usage:           []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}},
			VolumeCondition: &csi.VolumeCondition{Message: "block device present"},
		}, nil
	}
	if !info.Mounted {
		return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{
			Abnormal: true,
			Message:  "volume " + volID + " is not mounted at " + path,
		}}, nil
	}
	s, err := d.mounter.FilesystemStats(ctx, path)
	if errors.Is(err, node.ErrNotResponding) {
		return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{
			Abnormal: true, Message: "the " + info.FSType + " filesystem of volume " + volID + " at " + path + " does not answer: " + err.Error(),
		}}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	cond := &csi.VolumeCondition{Message: "mounted " + info.FSType + " filesystem"}
	if info.FSReadOnly {
		// The filesystem itself is read-only (a read-only publish is a
		// read-only bind of a read-write filesystem): the kernel turned it
		// read-only (ext4 errors=remount-ro, an I/O error) or someone
		// remounted it.
		cond = &csi.VolumeCondition{Abnormal: true, Message: "the " + info.FSType + " filesystem of volume " + volID +
			" at " + path + " has become read-only (after I/O or filesystem errors?): check the node's kernel log"}
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Total: s.TotalBytes, Available: s.AvailableBytes, Used: s.UsedBytes},
			{Unit: csi.VolumeUsage_INODES, Total: s.TotalInodes, Available: s.FreeInodes, Used: s.UsedInodes},
		},
		VolumeCondition: cond,
	}, nil
}

// NodeExpandVolume grows a filesystem to the disk the controller grew
// (a rescan first, so the node sees the new size); raw block and file
// volumes have nothing to grow here.
func (d *Driver) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	volID, path := req.GetVolumeId(), req.GetVolumePath()
	if err := requireFields(volID, "volume_path", path); err != nil {
		return nil, err
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := validateCapability(c); err != nil {
			return nil, err
		}
	}
	want, err := nodeExpandBytes(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	if isFileVolume(volID) {
		// The share's quota grew on the server; there is nothing to grow here.
		return &csi.NodeExpandVolumeResponse{CapacityBytes: want}, nil
	}
	info, err := d.mounter.Inspect(path)
	if err != nil {
		return nil, toStatus(err)
	}
	release, err := d.inflight.acquire(nodeKey(volID))
	if err != nil {
		return nil, err
	}
	defer release()

	dev := info.Source
	if info.IsBlockDevice || req.GetVolumeCapability().GetBlock() != nil {
		dev = path // raw block: the device itself, nothing to grow
	} else if !info.Mounted {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not mounted at %s", volID, path)
	}
	size, err := d.mounter.RescanDevice(ctx, dev)
	if err != nil {
		return nil, toStatus(err)
	}
	if want > 0 && size < want {
		return nil, status.Errorf(codes.FailedPrecondition,
			"the device of volume %s is %d bytes, less than the %d asked: the disk has not grown on this node yet", volID, size, want)
	}
	if dev != path {
		if err := d.mounter.ResizeFilesystem(ctx, dev, path); err != nil {
			return nil, toStatus(err)
		}
	}
	klog.FromContext(ctx).Info("Volume expanded", "volumeID", volID, "path", path, "bytes", size)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// publishedDiskUUID is the UUID of the attached disk in a block volume's
// publish context (ControllerPublishVolume put it there), refused up front
// when the node could not look it up.
func publishedDiskUUID(publishContext map[string]string) (string, error) {
	diskUUID := publishContext[PublishContextDiskUUID]
	if diskUUID == "" {
		return "", status.Errorf(codes.InvalidArgument,
			"publish_context has no %s: the volume must be attached by ControllerPublishVolume first", PublishContextDiskUUID)
	}
	if _, err := node.NormalizeDiskUUID(diskUUID); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "publish_context %s: %v", PublishContextDiskUUID, err)
	}
	return diskUUID, nil
}

// nodeExpandBytes is the size a NodeExpandVolume asks the device to have
// (0: whatever the controller made it); the range is optional, but a
// negative one, or one whose limit is below its requirement, is refused
// (OutOfRange, as the controller does): a file volume answers this size.
func nodeExpandBytes(r *csi.CapacityRange) (int64, error) {
	req, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case req < 0 || limit < 0:
		return 0, status.Error(codes.OutOfRange, "capacity range must not be negative")
	case limit > 0 && req > limit:
		return 0, status.Errorf(codes.OutOfRange, "required_bytes %d exceeds limit_bytes %d", req, limit)
	}
	return req, nil
}

// NodeGetCapabilities lists NodeCapabilities.
func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range NodeCapabilities {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo names this node (its VM's BIOS UUID), the volumes it takes
// and its topology segment.
func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: d.opts.NodeID, MaxVolumesPerNode: d.opts.MaxVolumesPerNode,
		AccessibleTopology: d.nodeAccessibleTopology()}, nil
}

// requireFields checks the volume ID and one path of a node request.
func requireFields(volID, pathName, path string) error {
	if volID == "" {
		return status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if path == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required", pathName)
	}
	return absolutePath(pathName, path)
}

// absolutePath refuses a relative node path: it would be taken from the
// plugin's working directory, not where kubelet meant. A volume_path (of
// stats and expand) names where a volume is: a relative one is nowhere,
// NotFound as the spec has it for a path with no volume (csi-sanity
// checks it).
func absolutePath(pathName, path string) error {
	if filepath.IsAbs(path) {
		return nil
	}
	code := codes.InvalidArgument
	if pathName == "volume_path" {
		code = codes.NotFound
	}
	return status.Errorf(code, "%s %q is not an absolute path", pathName, path)
}

// deviceGone says whether a mount's filesystem is on a block device that
// no attached disk is now: a disk hot-removed (its device node gone, or
// its name given to another) that came back as another device. Such a
// mount answers I/O errors and is in the way of staging the disk again.
// A filesystem on no block device (tmpfs, NFS) is never gone.
func (d *Driver) deviceGone(info node.PathInfo) (bool, error) {
	if info.MountedDevice == 0 {
		return false, nil
	}
	disks, err := d.mounter.DiskDevices(d.byIDDir())
	if err != nil {
		return false, err
	}
	_, attached := disks[info.MountedDevice]
	return !attached, nil
}

// nodeKey is the in-flight key of a volume's node operations.
func nodeKey(volID string) string { return "node volume " + volID }

func (d *Driver) byIDDir() string {
	if d.opts.ByIDDir == "" {
		return node.DefaultByIDDir
	}
	return d.opts.ByIDDir
}

func fsTypeOf(c *csi.VolumeCapability) string {
	if fs := strings.ToLower(c.GetMount().GetFsType()); fs != "" {
		return fs
	}
	return node.DefaultFSType
}

// sameDevice says whether two paths name the same block device: the same
// path, or device nodes of the same number.
func (d *Driver) sameDevice(a, b string) bool {
	if a == b {
		return true
	}
	ia, err1 := d.mounter.Inspect(a)
	ib, err2 := d.mounter.Inspect(b)
	return err1 == nil && err2 == nil && ia.IsBlockDevice && ib.IsBlockDevice && ia.DeviceNumber == ib.DeviceNumber
}
