package app

import (
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// VCenterOptions are the vCenter client's options from csi-vsphere.conf.
func VCenterOptions(c *config.Config) vcenter.Options {
	vc := c.VirtualCenter
	return vcenter.Options{
		Host:        vc.Host,
		Port:        vc.Port,
		User:        vc.User,
		Password:    vc.Password.Reveal(),
		Insecure:    vc.Insecure,
		CAFile:      vc.CAFile,
		Thumbprint:  vc.Thumbprint,
		Datacenters: vc.Datacenters,
		ClusterID:   c.ClusterID,

		TopologyCategories: c.TopologyCategories,
	}
}

// netPermissions are the [NetPermissions] sections as the driver gives
// them to CNS for file volumes (none without a configuration: node mode).
func netPermissions(c *config.Config) []vcenter.NetPermission {
	if c == nil {
		return nil
	}
	out := make([]vcenter.NetPermission, 0, len(c.NetPermissions))
	for _, p := range c.NetPermissions {
		out = append(out, vcenter.NetPermission{IPs: p.IPs, Access: p.Permissions, RootSquash: p.RootSquash})
	}
	return out
}
