package sim

import (
	"context"
	"fmt"
	"net/url"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	// Registers the vAPI endpoint (/rest, /api: tagging) with the simulator.
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// Topology of the seeded inventory, as vSphere admins set it up for
// Kubernetes zones: tag categories k8s-region and k8s-zone; the datacenter
// is tagged region-1, the first cluster (3 hosts, the datastores of
// datastoreSeeds) zone-a, a second cluster zone-b with hosts and a
// datastore of its own.
const (
	RegionCategory = "k8s-region"
	ZoneCategory   = "k8s-zone"
	// TopologyCategories is the [Labels] topology-categories value.
	TopologyCategories = RegionCategory + "," + ZoneCategory
	Region             = "region-1"
	ZoneA              = "zone-a"
	ZoneB              = "zone-b"
	zoneBCluster       = "cluster-zone-b"
	zoneBHosts         = 2
)

// zoneBDatastores are the datastores of zone B, mounted on its hosts only.
var zoneBDatastores = []datastoreSeed{
	{name: "zone-b-ds", capacity: 1 * int64(units.TB), fsType: "VMFS", vsan: true}, // the zone-B cluster's vSAN datastore
}

// buildZoneB adds the zone-B cluster, its hosts and its datastores.
func (inv *inventory) buildZoneB(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, root string) error {
	cl, err := object.NewFolder(c, dc.HostFolder).CreateCluster(ctx, zoneBCluster, types.ClusterConfigSpecEx{})
	if err != nil {
		return fmt.Errorf("create cluster %s: %w", zoneBCluster, err)
	}
	inv.zoneB = cl.Reference()
	for i := 1; i <= zoneBHosts; i++ {
		task, err := cl.AddHost(ctx, types.HostConnectSpec{HostName: fmt.Sprintf("esx-zone-b-%d.example.com", i), UserName: "root", Password: "x"}, true, nil, nil)
		if err != nil {
			return err
		}
		if _, err := task.WaitForResult(ctx, nil); err != nil {
			return fmt.Errorf("add host to %s: %w", zoneBCluster, err)
		}
	}
	cluster, ok := inv.model.Map().Get(inv.zoneB).(*simulator.ClusterComputeResource)
	if !ok || len(cluster.Host) != zoneBHosts {
		return fmt.Errorf("cluster %s has no hosts", zoneBCluster)
	}
	inv.zoneBCluster = cluster
	for _, seed := range zoneBDatastores {
		d, err := inv.createDatastore(ctx, c, root, seed, cluster.Self, cluster.Host)
		if err != nil {
			return fmt.Errorf("datastore %s: %w", seed.name, err)
		}
		inv.addDatastore(d)
	}
	return nil
}

func (inv *inventory) addDatastore(d *dsModel) {
	inv.datastores = append(inv.datastores, d)
	inv.dsByRef[d.ref] = d
	inv.dsByName[d.name] = d
}

// seedTags creates the categories and tags through the vAPI REST endpoint
// (as an admin would, with govc tags.* or the vSphere Client) and attaches
// them: region-1 on the datacenter, zone-a and zone-b on the clusters.
func (s *Sim) seedTags(ctx context.Context) error {
	u, err := url.Parse(s.URL())
	if err != nil {
		return err
	}
	// Our own server, in-process: its certificate is the one we made.
	sc := soap.NewClient(u, true)
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	rc := rest.NewClient(vc)
	if err := rc.Login(ctx, url.UserPassword(s.Username(), s.Password())); err != nil {
		return fmt.Errorf("vAPI login: %w", err)
	}
	defer func() { _ = rc.Logout(context.WithoutCancel(ctx)) }()
	m := tags.NewManager(rc)
	attach := map[string]map[string]mo.Reference{
		RegionCategory: {Region: s.inv.dc},
		ZoneCategory:   {ZoneA: s.inv.zoneA, ZoneB: s.inv.zoneB},
	}
	for _, cat := range []string{RegionCategory, ZoneCategory} {
		catID, err := m.CreateCategory(ctx, &tags.Category{
			Name: cat, Cardinality: "SINGLE",
			AssociableTypes: []string{"Datacenter", "ClusterComputeResource", "HostSystem"},
		})
		if err != nil {
			return fmt.Errorf("create tag category %s: %w", cat, err)
		}
		for name, ref := range attach[cat] {
			tagID, err := m.CreateTag(ctx, &tags.Tag{Name: name, CategoryID: catID})
			if err != nil {
				return fmt.Errorf("create tag %s: %w", name, err)
			}
			if err := m.AttachTag(ctx, tagID, ref); err != nil {
				return fmt.Errorf("attach tag %s to %s: %w", name, ref.Reference().Value, err)
			}
		}
	}
	return nil
}
