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

		ClusterDistribution:    c.ClusterDistribution,
		FileShareClusters:      vc.FileShareClusters,
		FileShareDatastoreURLs: vc.FileShareDatastoreURLs,
		TopologyCategories:     c.TopologyCategories,
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

// snapshotLimits are csi-vsphere.conf's [Snapshot] limits (none without a
// configuration: node mode).
func snapshotLimits(c *config.Config) config.SnapshotLimits {
	if c == nil {
		return config.SnapshotLimits{}
	}
	return c.Snapshots
}

// snapshotLimit is the per-volume snapshot limit: the flag's when given
// (non-zero), else the file's global-max-snapshots-per-block-volume.
func snapshotLimit(flag int, c *config.Config) int {
	if flag > 0 {
		return flag
	}
	return snapshotLimits(c).Global
}

// inTreeDatastoreURL is csi-vsphere.conf's migration-datastore-url ("" in
// node mode).
func inTreeDatastoreURL(c *config.Config) string {
	if c == nil {
		return ""
	}
	return c.VirtualCenter.MigrationDatastoreURL
}
