package driver

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// File volumes (ReadWriteMany, ReadOnlyMany): CNS file volumes, each a
// vSAN File Service share that every node mounts over NFS. The controller
// makes the share on a vSAN datastore whose cluster runs File Service; a
// publish hands the node the share's NFSv4.1 access point (no attach); the
// node mounts it at each target (no staging). Names and keys are
// upstream's, so StorageClasses and PVs made by the upstream driver keep
// working.

const (
	// PublishContextNFSv4AccessPoint is the publish-context key of a file
	// volume's NFSv4.1 access point ("server:/vsanfs/share").
	PublishContextNFSv4AccessPoint = "Nfsv4AccessPoint"

	// Volume context types.
	volumeTypeBlock = "vSphere CNS Block Volume"
	volumeTypeFile  = "vSphere CNS File Volume"

	// fileVolumePrefix starts the ID of every CNS file volume.
	fileVolumePrefix = "file:"

	fsNFS4 = "nfs4"
	fsNFS  = "nfs"
)

// DefaultNetPermissions are upstream's when csi-vsphere.conf has no
// [NetPermissions] section: every client address, read-write, root not
// squashed.
var DefaultNetPermissions = []vcenter.NetPermission{{IPs: "*", Access: "READ_WRITE"}}

// isFileVolume says from its ID whether a volume is a file volume.
func isFileVolume(id string) bool { return strings.HasPrefix(id, fileVolumePrefix) }

// createFileVolume makes the file volume name (or returns the one made
// under that name): the share goes on a vSAN datastore with File Service,
// compatible with the policy, in the requested topology, with room.
func (d *Driver) createFileVolume(ctx context.Context, name string, p volumeParams, size int64, r *csi.CapacityRange) (vcenter.Volume, error) {
	if p.FSType == "xfs" {
		return vcenter.Volume{}, status.Errorf(codes.InvalidArgument,
			"fstype xfs: a ReadWriteMany volume is a vSAN file share mounted over NFS; its fstype is nfs4 (the default) or nfs")
	}
	if p.source != nil {
		return vcenter.Volume{}, status.Errorf(codes.InvalidArgument,
			"a ReadWriteMany (file) volume can't be made from a %s: vSAN file shares have no snapshots or clones; "+
				"restoring a snapshot and cloning are for ReadWriteOnce block volumes", p.source.kind())
	}
	policy, err := d.policy(ctx, p.PolicyName)
	if err != nil {
		return vcenter.Volume{}, err
	}
	existing, err := d.vc.FindVolumeByName(ctx, name)
	switch {
	case err == nil:
		if !existing.File {
			return vcenter.Volume{}, status.Errorf(codes.AlreadyExists,
				"volume %q exists as a block volume (%s), not a ReadWriteMany file volume", name, existing.ID)
		}
		return existing, sameVolume(existing, policy, size, r)
	case !errors.Is(err, vcenter.ErrVolumeNotFound):
		return vcenter.Volume{}, err
	}

	all, err := d.vc.Datastores(ctx, policy.ID)
	if err != nil {
		return vcenter.Volume{}, err
	}
	support, err := d.vc.FileShareSupport(ctx, false)
	if err != nil {
		return vcenter.Volume{}, err
	}
	capable, refusals := d.fileDatastores(all, support, p)
	if len(refusals) == len(all) {
		// Before refusing, read again what may have changed since
		// (an admin switching File Service on).
		if support, err = d.vc.FileShareSupport(ctx, true); err != nil {
			return vcenter.Volume{}, err
		}
		capable, refusals = d.fileDatastores(all, support, p)
	}
	if len(refusals) == len(all) {
		return vcenter.Volume{}, noFileDatastore(p, refusals)
	}
	pl, err := d.placeInTopology(capable, p, size)
	if err != nil {
		return vcenter.Volume{}, err
	}
	vol, err := d.createPlaced(ctx, name, p, policy, pl, size, r, &vcenter.FileSpec{NetPermissions: d.opts.NetPermissions})
	if err != nil && !errors.Is(err, vcenter.ErrInsufficientSpace) && !errors.Is(err, vcenter.ErrUnavailable) {
		// vCenter may know better than what was read a while ago (File
		// Service switched off since): read again, and say so if it is that.
		if support, serr := d.vc.FileShareSupport(ctx, true); serr == nil {
			if _, refusals := d.fileDatastores(all, support, p); len(refusals) == len(all) {
				return vcenter.Volume{}, noFileDatastore(p, refusals)
			}
		}
	}
	return vol, err
}

// policy resolves a storage policy name (none: the zero Policy).
func (d *Driver) policy(ctx context.Context, name string) (vcenter.Policy, error) {
	if name == "" {
		return vcenter.Policy{}, nil
	}
	policy, err := d.vc.PolicyByName(ctx, name)
	if errors.Is(err, vcenter.ErrPolicyNotFound) {
		return vcenter.Policy{}, toStatus(hint(err, "storagepolicyname %q", name))
	}
	return policy, err
}

// publishFile "publishes" a file volume to a node: nothing is attached;
// the node gets the share's NFSv4.1 access point to mount.
func (d *Driver) publishFile(ctx context.Context, id, nodeID string, c *csi.VolumeCapability) (*csi.ControllerPublishVolumeResponse, error) {
	if c.GetBlock() != nil {
		return nil, status.Errorf(codes.InvalidArgument,
			"volume %s is a file volume (a vSAN file share mounted over NFS): it can't be published as a raw block device", id)
	}
	vm, err := d.vc.NodeVM(ctx, nodeID)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := d.checkNodeTopology(ctx, id, vm); err != nil {
		return nil, err
	}
	vol, err := d.vc.Volume(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	if !vol.File {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not a file volume (a vSAN file share): CNS reports it as a block volume", id)
	}
	ap := vol.AccessPoints[vcenter.AccessPointNFSv41]
	if ap == "" {
		return nil, status.Errorf(codes.FailedPrecondition,
			"file volume %s has no NFSv4.1 access point (vSAN reports %s): check vSAN File Service on its cluster",
			id, orDefault(describeAccessPoints(vol.AccessPoints), "none"))
	}
	d.filePubs.add(id, nodeID)
	klog.InfoS("Published file volume", "volumeID", id, "nodeID", nodeID, "vm", vm.Name, "accessPoint", ap)
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{PublishContextNFSv4AccessPoint: ap}}, nil
}

func describeAccessPoints(aps map[string]string) string {
	var parts []string
	for k, v := range aps {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// publications remembers which nodes file volumes are published to, for
// ListVolumes: nothing in vCenter records it (a publish attaches nothing),
// and the attacher, comparing ListVolumes with its VolumeAttachments,
// would otherwise publish every file volume again at each of its resyncs.
// It is memory only: after a restart the attacher's first resync publishes
// each again, which fills it.
type publications struct {
	mu    sync.Mutex
	nodes map[string]map[string]bool // volume ID → node IDs
}

func newPublications() *publications {
	return &publications{nodes: map[string]map[string]bool{}}
}

func (p *publications) add(volID, nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nodes[volID] == nil {
		p.nodes[volID] = map[string]bool{}
	}
	p.nodes[volID][nodeID] = true
}

// remove forgets one node (nodeID "": every node).
func (p *publications) remove(volID, nodeID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if nodeID == "" {
		delete(p.nodes, volID)
		return
	}
	delete(p.nodes[volID], nodeID)
	if len(p.nodes[volID]) == 0 {
		delete(p.nodes, volID)
	}
}

func (p *publications) of(volID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.nodes[volID]))
	for n := range p.nodes[volID] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
