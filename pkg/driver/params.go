package driver

import (
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	switch p.FSType {
	case "", "ext4", "xfs":
	default:
		return p, status.Errorf(codes.InvalidArgument, "fstype %q is not supported: use ext4 or xfs", p.FSType)
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

// validateCapabilities accepts single-node access modes on mount or block
// volumes. A VMDK can be attached to one VM at a time, so any multi-node
// mode is refused with what to use instead.
func validateCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume_capabilities are required")
	}
	for _, c := range caps {
		if err := validateCapability(c); err != nil {
			return err
		}
	}
	return nil
}

func validateCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return status.Error(codes.InvalidArgument, "volume capability is required")
	}
	if c.GetBlock() == nil && c.GetMount() == nil {
		return status.Error(codes.InvalidArgument, "volume capability needs an access type: mount or block")
	}
	if m := c.GetMount(); m != nil {
		switch fs := strings.ToLower(m.GetFsType()); fs {
		case "", "ext4", "xfs":
		default:
			return status.Errorf(codes.InvalidArgument, "fs_type %q is not supported: use ext4 or xfs", fs)
		}
	}
	if c.GetAccessMode() == nil {
		return status.Error(codes.InvalidArgument, "volume capability needs an access mode")
	}
	switch mode := c.GetAccessMode().GetMode(); mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return nil
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		return status.Errorf(codes.InvalidArgument,
			"access mode %s is not supported: a vSphere block volume (VMDK) attaches to one node VM at a time; "+
				"use ReadWriteOnce or ReadWriteOncePod, and for ReadWriteMany use a file volume (vSAN File Services / NFS)", mode)
	default:
		return status.Errorf(codes.InvalidArgument, "access mode %s is not supported", mode)
	}
}

func describeSize(b int64) string {
	switch {
	case b%gib == 0:
		return fmt.Sprintf("%d GiB", b/gib)
	default:
		return fmt.Sprintf("%d MiB", b/mib)
	}
}
