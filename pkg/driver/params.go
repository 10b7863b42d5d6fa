package driver

import (
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
)

// StorageClass parameters, matched case-insensitively.
const (
	paramStoragePolicyName = "storagepolicyname"
	paramDatastoreURL      = "datastoreurl"
	paramFSType            = "fstype"
	// csi.storage.k8s.io/fstype arrives as fstype: the provisioner strips
	// its own prefixed keys, except the metadata ones below.

	// What csi-provisioner passes with --extra-create-metadata.
	paramPVCName      = "csi.storage.k8s.io/pvc/name"
	paramPVCNamespace = "csi.storage.k8s.io/pvc/namespace"
	paramPVName       = "csi.storage.k8s.io/pv/name"
)

const (
	mib             = int64(1) << 20
	gib             = int64(1) << 30
	defaultCapacity = 1 * gib
)

// volumeParams are a CreateVolume request's parameters, parsed.
type volumeParams struct {
	PolicyName   string
	DatastoreURL string
	FSType       string
	PVCName      string
	PVCNamespace string
	PVName       string
	// source is the snapshot or volume to copy; set by CreateVolume (snapshots.go).
	source *contentSource
	// topology is the request's accessibility requirements (topology.go).
	topology *csi.TopologyRequirement
}

var acceptedParams = []string{paramStoragePolicyName, paramDatastoreURL, paramFSType}

func parseVolumeParams(in map[string]string) (volumeParams, error) {
	var p volumeParams
	// Keys are case-insensitive: two spellings of one key (storagePolicyName
	// and storagepolicyname) would leave the winner to map order.
	spelled := map[string]string{}
	for k := range in {
		key := strings.ToLower(k)
		if key == "csi.storage.k8s.io/fstype" {
			key = paramFSType
		}
		if other, dup := spelled[key]; dup {
			a, b := min(k, other), max(k, other)
			return p, status.Errorf(codes.InvalidArgument,
				"StorageClass parameters %q and %q are the same parameter (keys are case-insensitive): keep one", a, b)
		}
		spelled[key] = k
	}
	for k, v := range in {
		switch strings.ToLower(k) {
		case paramStoragePolicyName:
			p.PolicyName = v
		case paramDatastoreURL:
			p.DatastoreURL = v
		case paramFSType, "csi.storage.k8s.io/fstype":
			p.FSType = strings.ToLower(v)
		case paramPVCName:
			p.PVCName = v
		case paramPVCNamespace:
			p.PVCNamespace = v
		case paramPVName:
			p.PVName = v
		default:
			return p, status.Errorf(codes.InvalidArgument,
				"unknown StorageClass parameter %q: accepted parameters are %s (keys are case-insensitive)",
				k, strings.Join(acceptedParams, ", "))
		}
	}
	if p.FSType != "" && !node.SupportedFSType(p.FSType) && p.FSType != fsNFS4 && p.FSType != fsNFS {
		return p, status.Errorf(codes.InvalidArgument, "fstype %q is not supported: use %s (block volumes), nfs4 or nfs (ReadWriteMany file volumes)",
			p.FSType, node.DescribeFSTypes())
	}
	return p, nil
}

// capacityBytes applies a CapacityRange: the required size rounded up to a
// whole MiB (1 GiB when nothing is asked), never beyond limit_bytes.
// MaxVolumeBytes is the largest virtual disk vSphere makes: 62 TiB.
const MaxVolumeBytes = 62 << 40

func capacityBytes(r *csi.CapacityRange) (int64, error) {
	if r == nil {
		return defaultCapacity, nil
	}
	req, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if req < 0 || limit < 0 {
		return 0, status.Error(codes.OutOfRange, "capacity range must not be negative")
	}
	if limit > 0 && req > limit {
		return 0, status.Errorf(codes.OutOfRange, "required_bytes %d exceeds limit_bytes %d", req, limit)
	}
	if req > MaxVolumeBytes {
		return 0, status.Errorf(codes.OutOfRange, "required_bytes %d is more than the largest virtual disk vSphere makes (62 TiB)", req)
	}
	size := req
	if size == 0 {
		size = defaultCapacity
		if limit > 0 && limit < size {
			size = limit
		}
	}
	size = (size + mib - 1) / mib * mib
	if limit > 0 && size > limit {
		// Rounding up to a MiB went past the limit: round down instead,
		// if that still meets the requirement.
		size = limit / mib * mib
		if size < req || size == 0 {
			return 0, status.Errorf(codes.OutOfRange,
				"no whole number of MiB lies between required_bytes %d and limit_bytes %d", req, limit)
		}
	}
	return size, nil
}

// minFSBytes is the smallest disk each filesystem the node plugin makes can
// be made on: mkfs.xfs (xfsprogs 5.19 and later; the image's Debian has 6.1)
// refuses "Filesystem must be larger than 300MB". mkfs.ext4 makes any size.
var minFSBytes = map[string]int64{"xfs": 300 * mib}

// fsMinimum raises a block volume's size to its filesystem's smallest
// (minFSBytes), as a cloud disk's size is rounded up to what the cloud
// makes: a 1 MiB xfs claim gets a 300 MiB volume that stages, rather than
// one mkfs refuses on every NodeStage. The filesystem is the capabilities'
// fs_type (the StorageClass's csi.storage.k8s.io/fstype, or the
// provisioner's default), else the fstype parameter. Past limit_bytes, the
// refusal names the filesystem's minimum.
func fsMinimum(size int64, fsParam string, caps []*csi.VolumeCapability, r *csi.CapacityRange) (int64, error) {
	fs := strings.ToLower(fsParam)
	for _, c := range caps {
		if t := strings.ToLower(c.GetMount().GetFsType()); t != "" {
			fs = t
			break
		}
	}
	least, ok := minFSBytes[fs]
	if !ok || size >= least {
		return size, nil
	}
	if limit := r.GetLimitBytes(); limit > 0 && limit < least {
		return 0, status.Errorf(codes.OutOfRange,
			"an %s volume must be at least %d MiB (mkfs.%s makes none smaller); limit_bytes is %d", fs, least/mib, fs, limit)
	}
	return least, nil
}

// Access modes: a block volume (a VMDK) attaches to one node VM at a
// time, so it takes the single-node modes, as a filesystem or raw block;
// a file volume (a vSAN file share, file_volumes.go) is mounted by any number of
// nodes over NFS, so the multi-node modes make one, as a filesystem only.

// validateCapabilities checks a CreateVolume's capabilities and says
// whether they ask for a file volume: any multi-node mode does, and then
// every capability must be a multi-node filesystem one.
func validateCapabilities(caps []*csi.VolumeCapability) (file bool, err error) {
	if len(caps) == 0 {
		return false, status.Error(codes.InvalidArgument, "volume_capabilities are required")
	}
	for _, c := range caps {
		if err := validateCapability(c); err != nil {
			return false, err
		}
		if multiNode(c) {
			file = true
		}
	}
	if !file {
		return false, nil
	}
	for _, c := range caps {
		if !multiNode(c) {
			return false, status.Errorf(codes.InvalidArgument,
				"access modes %s and %s can't be one volume: a multi-node mode (ReadWriteMany, ReadOnlyMany) makes a file volume "+
					"(a vSAN file share mounted over NFS), a single-node mode a block volume (a VMDK); ask for one kind",
				c.GetAccessMode().GetMode(), firstMultiNode(caps).GetAccessMode().GetMode())
		}
	}
	return true, nil
}

func firstMultiNode(caps []*csi.VolumeCapability) *csi.VolumeCapability {
	for _, c := range caps {
		if multiNode(c) {
			return c
		}
	}
	return nil
}

// multiNode says whether a capability's access mode lets several nodes use
// the volume.
func multiNode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return true
	}
	return false
}

// validateCapability checks one capability: single-node modes on a mount
// (ext4, xfs) or block volume, multi-node modes on a mount volume whose
// fs_type is nfs4 (or "" or ext4, the provisioner's default, meaning nfs4)
// or nfs.
func validateCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if c.GetBlock() == nil && c.GetMount() == nil {
		return status.Error(codes.InvalidArgument, "volume capability needs an access type: mount or block")
	}
	if c.GetAccessMode() == nil {
		return status.Error(codes.InvalidArgument, "volume capability needs an access mode")
	}
	mode := c.GetAccessMode().GetMode()
	switch mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		if m := c.GetMount(); m != nil {
			switch fs := strings.ToLower(m.GetFsType()); {
			case fs == "" || node.SupportedFSType(fs):
			case fs == fsNFS4 || fs == fsNFS:
				return status.Errorf(codes.InvalidArgument,
					"fs_type %q is for file volumes, which take the multi-node access modes (ReadWriteMany, ReadOnlyMany); "+
						"a single-node volume is a block volume: use %s", fs, node.DescribeFSTypes())
			default:
				return status.Errorf(codes.InvalidArgument, "fs_type %q is not supported: use %s", fs, node.DescribeFSTypes())
			}
		}
		return nil
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if c.GetBlock() != nil {
			return status.Errorf(codes.InvalidArgument,
				"access mode %s is not supported on a raw block volume: a vSphere block volume (VMDK) attaches to one node VM at a time, "+
					"so block volumes take ReadWriteOnce or ReadWriteOncePod; ReadWriteMany and ReadOnlyMany are for filesystem volumes "+
					"(volumeMode: Filesystem), which are vSAN file shares mounted over NFS", mode)
		}
		switch fs := strings.ToLower(c.GetMount().GetFsType()); fs {
		case "", "ext4", fsNFS4, fsNFS:
		default:
			return status.Errorf(codes.InvalidArgument,
				"fs_type %q is not supported for a %s volume: it is a vSAN file share mounted over NFS; use nfs4 (the default) or nfs", fs, mode)
		}
		return nil
	default:
		return status.Errorf(codes.InvalidArgument, "access mode %s is not supported", mode)
	}
}
