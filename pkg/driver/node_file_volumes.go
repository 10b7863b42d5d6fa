package driver

import (
	"context"
	"errors"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
)

// The node side of file volumes (file_volumes.go): no staging, no device; each
// target is an NFS mount of the share's access point. The node plugin
// needs no vCenter for it: the access point comes in the publish context.

// fileOnNode says whether a node request is about a file volume: its ID,
// or the access point the controller published.
func fileOnNode(volID string, publishContext map[string]string) bool {
	return isFileVolume(volID) || publishContext[PublishContextNFSv4AccessPoint] != ""
}

// blockOnly refuses a multi-node access mode for a block volume.
func blockOnly(volID string, c *csi.VolumeCapability) error {
	if multiNode(c) {
		return status.Errorf(codes.InvalidArgument,
			"volume %s is a block volume (a VMDK), attached to one node VM at a time: access mode %s is for file volumes (ReadWriteMany, ReadOnlyMany)",
			volID, c.GetAccessMode().GetMode())
	}
	return nil
}

// nfsAt says whether path is (or should be) an NFS mount of a file volume:
// the volume ID says so, or the mount table does. The mount is not looked
// at: its server may be gone.
func (d *Driver) nfsAt(volID, pathName, path string) (bool, error) {
	if err := requireFields(volID, pathName, path); err != nil {
		return false, err
	}
	if isFileVolume(volID) {
		return true, nil
	}
	e, err := d.mounter.MountEntry(path)
	if err != nil {
		return false, toStatus(err)
	}
	return e.Mounted && node.IsNFS(e.FSType), nil
}

// nfsFSType is the filesystem type of a file volume's mount: nfs when the
// capability says so, else nfs4 ("", ext4 and nfs4 all mean NFSv4.1).
func nfsFSType(c *csi.VolumeCapability) string {
	if strings.ToLower(c.GetMount().GetFsType()) == fsNFS {
		return node.FSTypeNFS
	}
	return node.FSTypeNFS4
}

func (d *Driver) publishNFS(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	volID, target, c := req.GetVolumeId(), req.GetTargetPath(), req.GetVolumeCapability()
	if c.GetMount() == nil {
		return nil, status.Errorf(codes.InvalidArgument,
			"volume %s is a file volume (a vSAN file share): it is mounted over NFS, never published as a raw block device", volID)
	}
	source, err := publishedNFSExport(req.GetPublishContext())
	if err != nil {
		return nil, err
	}
	mode := c.GetAccessMode().GetMode()
	readOnly := req.GetReadonly() || mode == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY ||
		mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	fsType := nfsFSType(c)
	release, err := d.inflight.acquire(nodeKey(volID) + " " + target)
	if err != nil {
		return nil, err
	}
	defer release()

	cur, err := d.mounter.MountEntry(target)
	if err != nil {
		return nil, toStatus(err)
	}
	if cur.Mounted {
		switch {
		case cur.Source != source:
			return nil, status.Errorf(codes.AlreadyExists, "target_path %s already has %s mounted, not volume %s's %s", target, cur.Source, volID, source)
		case cur.ReadOnly != readOnly:
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with readonly=%t", volID, target, cur.ReadOnly)
		}
		return &csi.NodePublishVolumeResponse{}, nil // already published
	}
	if err := d.mounter.MountNFS(source, target, fsType, readOnly, c.GetMount().GetMountFlags()); err != nil {
		return nil, nfsMountError(volID, source, err)
	}
	klog.FromContext(ctx).Info("File volume published", "volumeID", volID, "path", target, "source", source, "fsType", fsType, "readOnly", readOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

// publishedNFSExport is the NFS export (server:/path) in a file volume's
// publish context (ControllerPublishVolume put it there).
func publishedNFSExport(publishContext map[string]string) (string, error) {
	source := publishContext[PublishContextNFSv4AccessPoint]
	if source == "" {
		return "", status.Errorf(codes.InvalidArgument,
			"publish_context has no %s: the file volume must be published by ControllerPublishVolume first", PublishContextNFSv4AccessPoint)
	}
	if err := node.CheckNFSExport(source); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%s: %v", PublishContextNFSv4AccessPoint, err)
	}
	return source, nil
}

// nfsMountError says what a failed NFS mount means for the person looking
// at the pod's events.
func nfsMountError(volID, source string, err error) error {
	msg := err.Error()
	hint := ""
	switch {
	case strings.Contains(msg, "access denied"):
		hint = ": the share's net permissions refuse this node's address ([NetPermissions] in csi-vsphere.conf)"
	case strings.Contains(msg, "unknown filesystem type") || strings.Contains(msg, "wrong fs type") || strings.Contains(msg, "helper program"):
		hint = ": this node can't mount NFS (the node plugin's image carries nfs-common; is the kernel's NFS client there?)"
	}
	return status.Errorf(codes.Internal, "mounting file volume %s from %s: %v%s", volID, source, err, hint)
}

func (d *Driver) unpublishNFS(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	volID, target := req.GetVolumeId(), req.GetTargetPath()
	release, err := d.inflight.acquire(nodeKey(volID) + " " + target)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := d.mounter.UnmountNFS(ctx, target, true); err != nil {
		return nil, toStatus(err)
	}
	klog.FromContext(ctx).Info("File volume unpublished", "volumeID", volID, "path", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// nfsStats reports a file volume's usage from statfs of its mount: the
// share's quota and use as its NFS server reports them. The mount is hard:
// with its server gone the statfs waits in the kernel until the server is
// back. The mounter bounds it (node/bounded.go): the answer comes within
// the call wait, an abnormal condition "NFS server not responding", and
// however often kubelet asks, one statfs per path at most is left waiting.
func (d *Driver) nfsStats(ctx context.Context, volID, path string) (*csi.NodeGetVolumeStatsResponse, error) {
	e, err := d.mounter.MountEntry(path)
	if err != nil {
		return nil, toStatus(err)
	}
	if !e.Mounted {
		return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{
			Abnormal: true, Message: "file volume " + volID + " is not mounted at " + path,
		}}, nil
	}
	s, err := d.mounter.FilesystemStats(ctx, path)
	if errors.Is(err, node.ErrNotResponding) {
		return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{
			Abnormal: true, Message: "NFS server not responding: the server of file volume " + volID + " (" + e.Source +
				") does not answer; I/O on the share waits until it is back (" + err.Error() + ")",
		}}, nil
	}
	if err != nil {
		return &csi.NodeGetVolumeStatsResponse{VolumeCondition: &csi.VolumeCondition{
			Abnormal: true, Message: "the NFS server of file volume " + volID + " (" + e.Source + ") does not answer: " + err.Error(),
		}}, nil
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Total: s.TotalBytes, Available: s.AvailableBytes, Used: s.UsedBytes},
			{Unit: csi.VolumeUsage_INODES, Total: s.TotalInodes, Available: s.FreeInodes, Used: s.UsedInodes},
		},
		VolumeCondition: &csi.VolumeCondition{Message: "mounted from " + e.Source + " (" + e.FSType + ")"},
	}, nil
}
