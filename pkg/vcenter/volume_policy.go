package vcenter

import (
	"context"
	"fmt"
	"strings"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// ChangeVolumePolicy changes the volume's storage policy through
// CnsReconfigVolumePolicy. The volume's datastore is checked against the
// policy first, from the SPBM compatibility cache (no call when warm), so
// that an incompatible policy is refused with a message naming the
// datastore; CNS refusing it anyway gives the same error. Cost: one CNS
// query and one task.
func (c *client) ChangeVolumePolicy(ctx context.Context, volumeID string, policy Policy) error {
	if policy.ID == "" {
		return fmt.Errorf("%w: no storage policy given", ErrInvalidArgument)
	}
	vol, err := c.Volume(ctx, volumeID)
	if err != nil {
		return err
	}
	if vol.PolicyID == policy.ID {
		klog.V(2).InfoS("Volume already has the storage policy", "volumeID", volumeID, "policy", policy.Name)
		return nil
	}
	ds, known := c.inv.Load().datastoreByURL(vol.DatastoreURL)
	if known {
		reasons, err := c.pol.compatibility(ctx, policy.ID, []types.ManagedObjectReference{ds.ref})
		if err != nil {
			return err
		}
		if why := reasons[ds.ref]; why != "" {
			return fmt.Errorf("%w: volume %s is on datastore %s: %s", ErrPolicyIncompatible, volumeID, ds.name, why)
		}
	}
	spec := cnstypes.CnsVolumePolicyReconfigSpec{
		VolumeId: cnstypes.CnsVolumeId{Id: volumeID},
		Profile:  []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: policy.ID}},
	}
	_, err = c.runCNSAgain(ctx, opid.ChangePolicy, volumeID, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.ReconfigVolumePolicy(ctx, []cnstypes.CnsVolumePolicyReconfigSpec{spec})
	})
	if err != nil {
		return fmt.Errorf("change the storage policy of volume %s to %q: %w", volumeID, policy.Name, err)
	}
	klog.InfoS("Volume storage policy changed", "volumeID", volumeID, "policy", policy.Name, "policyID", policy.ID)
	return nil
}

// datastoreByURL finds a datastore by its summary.url (trailing slashes
// and case of the scheme ignored).
func (inv *inventory) datastoreByURL(url string) (dsState, bool) {
	want := strings.TrimRight(url, "/")
	if want == "" {
		return dsState{}, false
	}
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	for _, ds := range inv.datastores {
		if strings.EqualFold(strings.TrimRight(ds.url, "/"), want) {
			return *ds, true
		}
	}
	return dsState{}, false
}
