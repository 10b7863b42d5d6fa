package driver

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// PublishContextDiskUUID is the publish-context key of the attached disk's
// UUID, by which the node plugin finds the device.
const PublishContextDiskUUID = "diskUUID"

// ControllerGetCapabilities lists what the controller does.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range ControllerCapabilities {
		if needsSnapshots(c) && !d.vc.About().Has(vcenter.FeatureSnapshots) {
			continue
		}
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume makes a CNS block volume on a datastore compatible with the
// StorageClass's storage policy, or returns the one already made under the
// request's name.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	file, err := validateCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, err
	}
	inTree, rest, err := inTreeParams(req.GetParameters()) // intree.go
	if err != nil {
		return nil, err
	}
	if err := refuseInTree(inTree, file, req.GetVolumeContentSource()); err != nil {
		return nil, err
	}
	params, err := parseVolumeParams(rest)
	if err != nil {
		return nil, err
	}
	if !file && (params.FSType == fsNFS4 || params.FSType == fsNFS) {
		return nil, status.Errorf(codes.InvalidArgument,
			"fstype %s is for ReadWriteMany (file) volumes; this claim's access modes make a block volume: use %s", params.FSType, node.DescribeFSTypes())
	}
	if err := applyMutableParams(&params, req.GetMutableParameters()); err != nil {
		return nil, err
	}
	size, err := capacityBytes(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	if !file {
		if size, err = fsMinimum(size, params.FSType, req.GetVolumeCapabilities(), req.GetCapacityRange()); err != nil {
			return nil, err
		}
	}
	// A snapshot to restore or a volume to clone (snapshots.go).
	if params.source, err = d.volumeSource(ctx, req.GetVolumeContentSource()); err != nil {
		return nil, err
	}
	if size, err = params.source.sourceSize(size, req.GetCapacityRange()); err != nil {
		return nil, err
	}
	params.topology = req.GetAccessibilityRequirements()
	release, err := d.inflight.acquire(volumeNameKey(name))
	if err != nil {
		return nil, err
	}

	vol, err := finish(ctx, release, "CreateVolume "+name, func(ctx context.Context) (vcenter.Volume, error) {
		if file {
			return d.createFileVolume(ctx, name, params, size, req.GetCapacityRange())
		}
		if inTree != nil {
			return d.createInTree(ctx, name, params, inTree, size, req.GetCapacityRange())
		}
		return d.createVolume(ctx, name, params, size, req.GetCapacityRange())
	})
	if err != nil {
		return nil, toStatus(err)
	}
	out := csiVolume(vol, params)
	if err := d.withTopology(ctx, vol, out); err != nil {
		return nil, toStatus(err)
	}
	inTreeResult(out, inTree)
	return &csi.CreateVolumeResponse{Volume: out}, nil
}

func (d *Driver) createVolume(ctx context.Context, name string, p volumeParams, size int64, r *csi.CapacityRange) (vcenter.Volume, error) {
	policy, err := d.policy(ctx, p.PolicyName)
	if err != nil {
		return vcenter.Volume{}, err
	}

	existing, err := d.vc.FindVolumeByName(ctx, name)
	switch {
	case err == nil && existing.File:
		return vcenter.Volume{}, status.Errorf(codes.AlreadyExists,
			"volume %q exists as a ReadWriteMany file volume (%s), not a block volume", name, existing.ID)
	case err == nil:
		if p.source != nil && p.source.snapshotID == "" {
			// A clone made before the driver could answer may have left its
			// transient snapshot on the source.
			d.vc.DropCloneLeftovers(ctx, p.source.volumeID, name)
		}
		return existing, sameVolume(existing, policy, size, r)
	case !errors.Is(err, vcenter.ErrVolumeNotFound):
		return vcenter.Volume{}, err
	}

	all, err := d.vc.Datastores(ctx, policy.ID)
	if err != nil {
		return vcenter.Volume{}, err
	}
	pl, err := d.placeInTopology(all, p, size) // place() per requested segment
	if err != nil {
		return vcenter.Volume{}, err
	}
	return d.createPlaced(ctx, name, p, policy, pl, size, r, nil)
}

// createPlaced makes the volume (a file volume with file) on the
// placement's candidates, best first, and checks one that an earlier
// attempt made (found by name after settling).
func (d *Driver) createPlaced(ctx context.Context, name string, p volumeParams, policy vcenter.Policy, pl placement, size int64,
	r *csi.CapacityRange, file *vcenter.FileSpec) (vcenter.Volume, error) {
	klog.InfoS("Placing volume", "name", name, "file", file != nil, "policy", p.PolicyName, "size", describeSize(size),
		"datastore", pl.Candidates[0].Name, "why", pl.Why)
	spec := vcenter.CreateSpec{
		Name:          name,
		CapacityBytes: size,
		PolicyID:      policy.ID,
		PVCName:       p.PVCName,
		PVCNamespace:  p.PVCNamespace,
		PVName:        p.PVName,
		File:          file,
	}
	if p.source != nil {
		spec.SourceVolumeID, spec.SourceSnapshotID = p.source.volumeID, p.source.snapshotID
	}
	for _, ds := range pl.Candidates {
		spec.DatastoreIDs = append(spec.DatastoreIDs, ds.ID)
	}
	vol, err := d.vc.CreateVolume(ctx, spec)
	if errors.Is(err, vcenter.ErrInsufficientSpace) {
		return vcenter.Volume{}, hint(err, "no datastore%s had room for %s", compatibleWith(p.PolicyName), describeSize(size))
	}
	if err != nil {
		return vcenter.Volume{}, err
	}
	if vol.Existing { // found by name after settling (vcenter.CreateVolume)
		if err := sameVolume(vol, policy, size, r); err != nil {
			return vcenter.Volume{}, err
		}
	}
	klog.InfoS("Created volume", "volumeID", vol.ID, "name", name, "file", vol.File, "datastoreURL", vol.DatastoreURL, "size", describeSize(vol.CapacityBytes))
	return vol, nil
}

// sameVolume checks that an existing volume of the requested name is what
// the request asks for; otherwise the name is taken (AlreadyExists).
func sameVolume(v vcenter.Volume, policy vcenter.Policy, size int64, r *csi.CapacityRange) error {
	limit := r.GetLimitBytes()
	if v.CapacityBytes < size || (limit > 0 && v.CapacityBytes > limit) {
		return status.Errorf(codes.AlreadyExists,
			"volume %q exists with %s (volume %s), which the requested capacity range does not allow",
			v.Name, describeSize(v.CapacityBytes), v.ID)
	}
	if policy.ID != "" && v.PolicyID != "" && v.PolicyID != policy.ID {
		return status.Errorf(codes.AlreadyExists,
			"volume %q exists (volume %s) with another storage policy than %q", v.Name, v.ID, policy.Name)
	}
	return nil
}

func csiVolume(v vcenter.Volume, p volumeParams) *csi.Volume {
	vc := map[string]string{"type": volumeTypeBlock}
	if v.File {
		vc["type"] = volumeTypeFile
	}
	if v.DatastoreURL != "" {
		vc["datastoreurl"] = v.DatastoreURL
	}
	if p.PolicyName != "" {
		vc["storagepolicyname"] = p.PolicyName
	}
	return &csi.Volume{VolumeId: v.ID, CapacityBytes: v.CapacityBytes, VolumeContext: vc, ContentSource: p.source.toCSI()}
}

// DeleteVolume deletes a CNS volume and its disk. A volume already gone is
// success; an attached one is refused.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	id, err := d.inTreeVolume(ctx, id, true) // intree.go
	if errors.Is(err, vcenter.ErrVolumeNotFound) {
		klog.V(2).InfoS("In-tree volume already gone", "volumeID", req.GetVolumeId())
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	release, err := d.inflight.acquireAll(volumeKey(id), snapshotsKey(id))
	if err != nil {
		return nil, err
	}
	defer release()
	err = d.vc.DeleteVolume(ctx, id)
	switch {
	case err == nil:
		klog.InfoS("Deleted volume", "volumeID", id)
	case errors.Is(err, vcenter.ErrVolumeNotFound):
		klog.V(2).InfoS("Volume already gone", "volumeID", id)
	case errors.Is(err, vcenter.ErrVolumeInUse):
		return nil, toStatus(hint(err, "volume %s is still attached to a node VM; it can be deleted once it is detached", id))
	case errors.Is(err, vcenter.ErrHasSnapshots):
		return nil, toStatus(hint(err, "volume %s has snapshots; it can be deleted once its VolumeSnapshots are deleted", id))
	default:
		return nil, toStatus(err)
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerPublishVolume attaches the volume's disk to the node's VM.
func (d *Driver) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	id, node := req.GetVolumeId(), req.GetNodeId()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case node == "":
		return nil, status.Error(codes.InvalidArgument, "node_id is required")
	}
	if err := validateCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	id, err := d.inTreeVolume(ctx, id, true) // intree.go
	if err != nil {
		return nil, toStatus(err)
	}
	key := volumeKey(id)
	if isFileVolume(id) {
		key = publishKey(id, node) // to several nodes at once
	}
	release, err := d.inflight.acquire(key)
	if err != nil {
		return nil, err
	}
	defer release()
	if isFileVolume(id) {
		return d.publishFile(ctx, id, node, req.GetVolumeCapability())
	}
	if multiNode(req.GetVolumeCapability()) {
		return nil, status.Errorf(codes.InvalidArgument,
			"volume %s is a block volume (a VMDK), which attaches to one node VM at a time: access mode %s is for file volumes",
			id, req.GetVolumeCapability().GetAccessMode().GetMode())
	}

	vm, err := d.vc.NodeVM(ctx, node)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := d.checkNodeTopology(ctx, id, vm); err != nil {
		return nil, err
	}
	diskUUID, err := d.attachVolume(ctx, id, node) // registers a first-class disk
	switch {
	case errors.Is(err, vcenter.ErrVolumeInUse):
		err = hint(err, "volume %s is attached to another node VM; it must be detached there first", id)
	case errors.Is(err, vcenter.ErrNodeFull):
		err = hint(err, "node %s can take no more volumes (vSphere allows 4 SCSI controllers of 15 disks per VM); "+
			"a volume must be detached from it first, and the node plugin's --max-volumes-per-node "+
			"should keep the scheduler from getting here", node)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	klog.InfoS("Attached volume", "volumeID", id, "nodeID", node, "diskUUID", diskUUID)
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{PublishContextDiskUUID: diskUUID}}, nil
}

// ControllerUnpublishVolume detaches the volume's disk from the node's VM
// (from every VM when no node is given). Already detached, a volume that is
// gone, or a VM that no longer exists: success.
func (d *Driver) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	id, node := req.GetVolumeId(), req.GetNodeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	// An in-tree disk that is no CNS volume was never attached by this
	// driver, which registers before it attaches (intree.go).
	id, err := d.inTreeVolume(ctx, id, false)
	if errors.Is(err, vcenter.ErrVolumeNotFound) {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	key := volumeKey(id)
	if isFileVolume(id) {
		key = publishKey(id, node)
	}
	release, err := d.inflight.acquire(key)
	if err != nil {
		return nil, err
	}
	defer release()
	if isFileVolume(id) {
		// Nothing was attached: the node unmounts the share.
		d.filePubs.remove(id, node)
		klog.InfoS("Unpublished file volume", "volumeID", id, "nodeID", node)
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}

	nodes := []string{node}
	if node == "" {
		vol, err := d.vc.Volume(ctx, id)
		if errors.Is(err, vcenter.ErrVolumeNotFound) {
			return &csi.ControllerUnpublishVolumeResponse{}, nil
		}
		if err != nil {
			return nil, toStatus(err)
		}
		nodes = nodes[:0]
		for _, a := range vol.Attachments {
			nodes = append(nodes, a.NodeUUID)
		}
	}
	for _, n := range nodes {
		err := d.vc.DetachVolume(ctx, id, n)
		if err != nil && !errors.Is(err, vcenter.ErrVolumeNotFound) && !errors.Is(err, vcenter.ErrNodeNotFound) {
			return nil, toStatus(err)
		}
		klog.InfoS("Detached volume", "volumeID", id, "nodeID", n)
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms the capabilities a volume supports.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities are required")
	}
	cnsID, err := d.inTreeVolume(ctx, id, true) // intree.go
	if err != nil {
		return nil, toStatus(err)
	}
	vol, err := d.vc.Volume(ctx, cnsID)
	if err != nil {
		return nil, toStatus(err)
	}
	if _, err := parseVolumeParams(req.GetParameters()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	file, err := validateCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	if file && !vol.File {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: fmt.Sprintf(
			"volume %s is a block volume (a VMDK): it takes single-node access modes only", id)}, nil
	}
	if vol.File {
		for _, c := range req.GetVolumeCapabilities() {
			if c.GetBlock() != nil {
				return &csi.ValidateVolumeCapabilitiesResponse{Message: fmt.Sprintf(
					"volume %s is a file volume (a vSAN file share): it is mounted over NFS, never a raw block device", id)}, nil
			}
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// listPage is how many volumes one CNS query asks for when the caller sets
// no limit.
const listPage = 500

// ListVolumes pages through this cluster's volumes with the nodes each is
// published to. The token is the offset of the next page.
func (d *Driver) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	offset, limit, err := listPaging(req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	var vols []vcenter.Volume
	for {
		ask := int64(listPage)
		if limit > 0 {
			ask = limit - int64(len(vols))
		}
		page, next, err := d.vc.ListVolumes(ctx, offset, ask)
		if err != nil {
			return nil, toStatus(err)
		}
		vols = append(vols, page...)
		offset = next
		if next == 0 || (limit > 0 && int64(len(vols)) >= limit) {
			break
		}
	}
	if req.GetStartingToken() != "" && len(vols) == 0 && offset == 0 {
		// A token past the end is not one we gave out.
		if total, err := d.countVolumes(ctx); err == nil && total < mustAtoi(req.GetStartingToken()) {
			return nil, status.Errorf(codes.Aborted, "starting_token %q is past the last volume", req.GetStartingToken())
		}
	}
	resp := &csi.ListVolumesResponse{}
	for _, v := range vols {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: &csi.Volume{VolumeId: inTreeID(v), CapacityBytes: v.CapacityBytes},
			Status: &csi.ListVolumesResponse_VolumeStatus{
				PublishedNodeIds: d.publishedNodes(v),
				VolumeCondition:  condition(v),
			},
		})
	}
	if offset != 0 {
		resp.NextToken = strconv.FormatInt(offset, 10)
	}
	return resp, nil
}

// listPaging checks a List call's paging: max_entries (0 = no limit) and the
// starting token, which is the offset this driver handed out as next_token.
func listPaging(maxEntries int32, token string) (offset, limit int64, err error) {
	if maxEntries < 0 {
		return 0, 0, status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	if token != "" {
		offset, err = strconv.ParseInt(token, 10, 64)
		if err != nil || offset < 0 {
			return 0, 0, status.Errorf(codes.Aborted, "starting_token %q is not one this driver gave out", token)
		}
	}
	return offset, int64(maxEntries), nil
}

func (d *Driver) countVolumes(ctx context.Context) (int64, error) {
	var n, offset int64
	for {
		page, next, err := d.vc.ListVolumes(ctx, offset, listPage)
		if err != nil {
			return 0, err
		}
		n += int64(len(page))
		if next == 0 {
			return n, nil
		}
		offset = next
	}
}

func mustAtoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// publishedNodes are the node VMs a block volume's disk is attached to, or
// the nodes a file volume was published to (file_volumes.go).
func (d *Driver) publishedNodes(v vcenter.Volume) []string {
	if v.File {
		return d.filePubs.of(v.ID)
	}
	var ids []string
	for _, a := range v.Attachments {
		ids = append(ids, a.NodeUUID)
	}
	return ids
}

// condition turns CNS's health status into a CSI volume condition.
func condition(v vcenter.Volume) *csi.VolumeCondition {
	switch v.Health {
	case "", "green":
		return &csi.VolumeCondition{Abnormal: false, Message: "healthy"}
	case "unknown":
		return &csi.VolumeCondition{Abnormal: false, Message: "CNS has not assessed the volume's health yet"}
	default:
		return &csi.VolumeCondition{Abnormal: true, Message: fmt.Sprintf("CNS reports the volume's health as %s", v.Health)}
	}
}

// ControllerGetVolume reports one volume with its nodes and condition.
func (d *Driver) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	cnsID, err := d.inTreeVolume(ctx, id, true) // intree.go
	if err != nil {
		return nil, toStatus(err)
	}
	v, err := d.vc.Volume(ctx, cnsID)
	if err != nil {
		return nil, toStatus(err)
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: &csi.Volume{VolumeId: inTreeID(v), CapacityBytes: v.CapacityBytes},
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{
			PublishedNodeIds: d.publishedNodes(v),
			VolumeCondition:  condition(v),
		},
	}, nil
}

// GetCapacity reports, for a storage policy (or none), the free space of the
// compatible datastores reachable from every node VM, and the largest volume
// one of them can take.
func (d *Driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	file := false
	for _, c := range req.GetVolumeCapabilities() {
		if err := validateCapability(c); err != nil {
			return &csi.GetCapacityResponse{}, nil
		}
		file = file || multiNode(c)
	}
	p, err := parseVolumeParams(req.GetParameters())
	if err != nil {
		return nil, err
	}
	var policy vcenter.Policy
	if p.PolicyName != "" {
		if policy, err = d.vc.PolicyByName(ctx, p.PolicyName); err != nil {
			return nil, toStatus(err)
		}
	}
	all, err := d.vc.Datastores(ctx, policy.ID)
	if err != nil {
		return nil, toStatus(err)
	}
	var total, largest int64
	if file { // the datastores that can hold a file share
		if total, largest, err = d.fileCapacity(ctx, all, p, req.GetAccessibleTopology().GetSegments()); err != nil {
			return nil, toStatus(err)
		}
		return &csi.GetCapacityResponse{AvailableCapacity: total, MaximumVolumeSize: wrapperspb.Int64(largest)}, nil
	}
	// The same eligibility as placement, in the segment asked about (placement.go).
	total, largest = d.blockCapacity(all, p, req.GetAccessibleTopology().GetSegments())
	return &csi.GetCapacityResponse{
		AvailableCapacity: total,
		MaximumVolumeSize: wrapperspb.Int64(largest),
	}, nil
}
