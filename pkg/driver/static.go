package driver

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Static provisioning: a PersistentVolume written by hand whose
// volumeHandle is
//   - a CNS volume ID: works as is (the ID is all publish and stage need);
//   - the ID of a first-class disk that is not (yet) a CNS volume: the
//     first ControllerPublish registers it with CNS (CnsCreateVolume with
//     BackingDiskId), as upstream's syncer does for static PVs, and attaches
//     it. Registration makes it visible in the vSphere Client's Container
//     Volumes view and lets CNS attach it; the disk's data stays.
// Only IDs that look like a first-class disk's (a UUID) are tried, so an
// unknown ID costs one extra query and stays NotFound.

// attachVolume attaches the volume, registering a first-class disk with
// CNS first when the ID is not a CNS volume.
func (d *Driver) attachVolume(ctx context.Context, id, node string) (string, error) {
	diskUUID, err := d.vc.AttachVolume(ctx, id, node)
	if !errors.Is(err, vcenter.ErrVolumeNotFound) || !isDiskID(id) {
		return diskUUID, err
	}
	if _, rerr := d.vc.RegisterDisk(ctx, id, vcenter.StaticVolumeName(id)); rerr != nil {
		return "", rerr
	}
	klog.InfoS("Registered a first-class disk with CNS for a static volume", "volumeID", id)
	return d.vc.AttachVolume(ctx, id, node)
}

func isDiskID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil
}
