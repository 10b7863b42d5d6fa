package vcenter

import (
	"context"
	"errors"
	"fmt"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// StaticVolumeName is the CNS volume name of a first-class disk registered
// for a static PV (by the driver at its first attach, or by the syncer).
func StaticVolumeName(diskID string) string { return "static-" + diskID }

// RegisterDisk makes an existing first-class disk a CNS volume: a
// CnsCreateVolume whose backing is the disk's ID (CNS takes the datastore
// and size from the disk), with this cluster's container-cluster record so
// the volume is one of the cluster's. A disk that is already a CNS volume
// is returned as it is.
func (c *client) RegisterDisk(ctx context.Context, diskID, name string) (Volume, error) {
	if diskID == "" || name == "" {
		return Volume{}, fmt.Errorf("%w: disk ID and volume name are required", ErrInvalidArgument)
	}
	if vol, err := c.Volume(ctx, diskID); err == nil || !errors.Is(err, ErrVolumeNotFound) {
		return vol, err
	}
	cs := cnstypes.CnsVolumeCreateSpec{
		Name:                 name,
		VolumeType:           string(cnstypes.CnsVolumeTypeBlock),
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{BackingDiskId: diskID},
		Metadata:             c.volumeMetadata(CreateSpec{}),
	}
	_, err := c.runCNS(ctx, opid.Create, name, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{cs})
	})
	if errors.Is(err, errAlreadyRegistered) {
		err = nil // registered meanwhile
	}
	if err != nil {
		if errors.Is(err, ErrVolumeNotFound) {
			return Volume{}, fmt.Errorf("%w: no CNS volume and no first-class disk with ID %s", ErrVolumeNotFound, diskID)
		}
		return Volume{}, fmt.Errorf("register first-class disk %s with CNS: %w", diskID, err)
	}
	c.noteName(name, diskID)
	klog.InfoS("First-class disk registered as a CNS volume", "volumeID", diskID, "name", name)
	return c.Volume(ctx, diskID)
}
