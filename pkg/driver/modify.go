package driver

import (
	"context"
	"errors"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// mutableParams are the parameters a VolumeAttributesClass may carry: the
// ones ControllerModifyVolume can change in place.
var mutableParams = []string{paramStoragePolicyName}

// parseMutableParams reads a VolumeAttributesClass's parameters (keys
// case-insensitive). Unknown keys and empty values are InvalidArgument: the
// external-resizer then marks the change infeasible instead of retrying.
func parseMutableParams(in map[string]string) (policyName string, err error) {
	for k, v := range in {
		switch strings.ToLower(k) {
		case paramStoragePolicyName:
			if v == "" {
				return "", status.Error(codes.InvalidArgument, "mutable parameter storagepolicyname is empty: name a vSphere storage policy")
			}
			policyName = v
		default:
			return "", status.Errorf(codes.InvalidArgument,
				"mutable parameter %q is not supported: a VolumeAttributesClass of this driver can set %s (keys are case-insensitive)",
				k, strings.Join(mutableParams, ", "))
		}
	}
	return policyName, nil
}

// applyMutableParams lets a CreateVolume's VolumeAttributesClass parameters
// override the StorageClass's: the volume is created with the policy the
// class names.
func applyMutableParams(p *volumeParams, mutable map[string]string) error {
	policy, err := parseMutableParams(mutable)
	if err != nil {
		return err
	}
	if policy != "" {
		p.PolicyName = policy
	}
	return nil
}

// ControllerModifyVolume changes a volume's storage policy in place
// (Kubernetes VolumeAttributesClass, parameter storagepolicyname) through
// CNS policy reconfiguration. A policy the volume's datastore does not
// satisfy is refused with InvalidArgument naming the datastore: CNS changes
// the policy without moving the volume.
func (d *Driver) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	policyName, err := parseMutableParams(req.GetMutableParameters())
	if err != nil {
		return nil, err
	}
	if id, err = d.inTreeVolume(ctx, id, true); err != nil { // intree.go
		return nil, toStatus(err)
	}
	release, err := d.inflight.acquire(volumeKey(id))
	if err != nil {
		return nil, err
	}
	defer release()
	if policyName == "" {
		// Nothing to change; still say whether the volume exists.
		if _, err := d.vc.Volume(ctx, id); err != nil {
			return nil, toStatus(err)
		}
		return &csi.ControllerModifyVolumeResponse{}, nil
	}
	policy, err := d.vc.PolicyByName(ctx, policyName)
	if err != nil {
		if errors.Is(err, vcenter.ErrPolicyNotFound) {
			err = hint(err, "storagepolicyname %q", policyName)
		}
		return nil, toStatus(err)
	}
	if err := d.vc.ChangeVolumePolicy(ctx, id, policy); err != nil {
		if errors.Is(err, vcenter.ErrPolicyIncompatible) {
			err = hint(err, "cannot change volume %s to storage policy %q (CNS changes a policy in place, so pick a policy its datastore satisfies)",
				id, policy.Name)
		}
		return nil, toStatus(err)
	}
	klog.InfoS("Modified volume", "volumeID", id, "policy", policy.Name)
	return &csi.ControllerModifyVolumeResponse{}, nil
}
