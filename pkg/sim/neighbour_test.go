package sim

import (
	"context"
	"slices"
	"strings"
	"testing"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// allVMs reads every VM of the inventory through a container view, as a
// client that lists VMs does.
func allVMs(t *testing.T, c *clients, props ...string) []mo.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	m := view.NewManager(c.vim)
	v, err := m.CreateContainerView(ctx, c.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, props, &vms); err != nil {
		t.Fatal(err)
	}
	return vms
}

func names(c *clients, refs []types.ManagedObjectReference) map[types.ManagedObjectReference]string {
	out := map[types.ManagedObjectReference]string{}
	var ents []mo.ManagedEntity
	if len(refs) == 0 || property.DefaultCollector(c.vim).Retrieve(context.Background(), refs, []string{"name", "parent"}, &ents) != nil {
		return out
	}
	for _, e := range ents {
		out[e.Self] = e.Name
	}
	return out
}

// TestNeighbourInventory (issue 20): the unrelated VMs are real VMs of the
// inventory, of each kind, in their folders and pools, over every host;
// the workload cluster's local datastores are mounted by one host each;
// the other cluster's volumes and snapshots are CNS's, of its cluster ID
// and our user.
func TestNeighbourInventory(t *testing.T) {
	s := startSim(t, Options{Neighbours: Neighbours{VMs: 60, OtherClusterVolumes: 9}})
	c := connect(t, s)
	ctx := context.Background()
	templates, otherNodes, workloads := neighbourCounts(60)
	if templates != 1 || otherNodes != 2 || workloads != 57 {
		t.Fatalf("neighbourCounts(60) = %d, %d, %d", templates, otherNodes, workloads)
	}

	vms := allVMs(t, c, "name", "parent", "resourcePool", "runtime.host", "runtime.powerState", "config.template", "config.uuid",
		"config.extraConfig", "config.hardware.device")
	if len(vms) != 3+60 {
		t.Fatalf("the inventory has %d VMs, want 3 node VMs and 60 neighbours", len(vms))
	}
	byName := map[string]mo.VirtualMachine{}
	var parents, pools, hosts []types.ManagedObjectReference
	for _, vm := range vms {
		byName[vm.Name] = vm
		parents = append(parents, *vm.Parent)
		if vm.ResourcePool != nil {
			pools = append(pools, *vm.ResourcePool)
		}
		hosts = append(hosts, *vm.Runtime.Host)
	}
	parentNames, poolNames, hostNames := names(c, parents), names(c, pools), names(c, hosts)
	kinds := map[string]int{}
	off, usedHosts := 0, map[string]bool{}
	for _, nv := range s.NeighbourVMs() {
		kinds[nv.Kind]++
		vm, ok := byName[nv.Name]
		if !ok {
			t.Errorf("neighbour %s is not in the inventory", nv.Name)
			continue
		}
		usedHosts[hostNames[*vm.Runtime.Host]] = true
		if want := nv.Folder[strings.LastIndex(nv.Folder, "/")+1:]; parentNames[*vm.Parent] != want {
			t.Errorf("%s is in folder %q, want %q (%s)", nv.Name, parentNames[*vm.Parent], want, nv.Folder)
		}
		on := vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
		switch nv.Kind {
		case NeighbourTemplate:
			if !vm.Config.Template || vm.ResourcePool != nil || on || !strings.HasPrefix(nv.Name, "tmpl-") {
				t.Errorf("template %s: template=%v pool=%v on=%v", nv.Name, vm.Config.Template, vm.ResourcePool, on)
			}
			continue
		case NeighbourOtherNode:
			checkNodeVM(t, c, vm, nodeUUID(nv.Name))
		}
		if vm.ResourcePool == nil || poolNames[*vm.ResourcePool] != nv.Pool || on != nv.On {
			t.Errorf("%s: pool %v (want %s), on %v (want %v)", nv.Name, vm.ResourcePool, nv.Pool, on, nv.On)
		}
		if !on {
			off++
		}
		disks, nics := 0, 0
		for _, d := range vm.Config.Hardware.Device {
			switch d := d.(type) {
			case *types.VirtualDisk:
				if d.VDiskId == nil {
					disks++
				}
			case types.BaseVirtualEthernetCard:
				nics++
			}
		}
		if disks < 1 || disks > 2 || nics != 1 {
			t.Errorf("%s has %d disks (not first-class) and %d NICs, want 1 or 2 and 1", nv.Name, disks, nics)
		}
	}
	if kinds[NeighbourTemplate] != templates || kinds[NeighbourOtherNode] != otherNodes || kinds[NeighbourWorkload] != workloads {
		t.Errorf("kinds %v, want %d templates, %d other nodes, %d workloads", kinds, templates, otherNodes, workloads)
	}
	if off == 0 || off > workloads/2 {
		t.Errorf("%d of %d workloads are powered off, want some", off, workloads)
	}
	for _, h := range s.Hosts() {
		if !usedHosts[h.Name] {
			t.Errorf("host %s (%s) has no neighbour VM", h.Name, h.Cluster)
		}
	}
	checkWorkloadDatastores(t, c, s)

	// The other cluster's volumes: CNS's, of its cluster ID and our user.
	res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{ContainerClusterIds: []string{DefaultOtherClusterID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Volumes) != 9 {
		t.Errorf("CnsQueryVolume by the other cluster ID: %d volumes, want 9", len(res.Volumes))
	}
	for _, v := range res.Volumes {
		if cc := v.Metadata.ContainerCluster; cc.ClusterId != DefaultOtherClusterID || cc.VSphereUser != s.Username() || !strings.HasPrefix(v.Name, "pvc-") {
			t.Errorf("volume %s: %+v", v.Name, cc)
		}
	}
	otherNodeRefs := map[string]bool{}
	for _, nv := range s.NeighbourVMs() {
		otherNodeRefs[nv.Ref] = nv.Kind == NeighbourOtherNode
	}
	attached := 0
	for _, v := range s.Volumes() {
		if otherNodeRefs[v.VM] {
			attached++
		}
	}
	if attached != 3 { // every third of 9
		t.Errorf("%d of the other cluster's volumes are attached to its nodes, want 3", attached)
	}
	if n := s.SnapshotCount(); n != 3 { // volumes 1 (two) and 6 (one)
		t.Errorf("%d snapshots, want 3", n)
	}
	if got := s.NeighbourTaskCounts(); len(got) != 0 {
		t.Errorf("tasks started without a rate: %v", got)
	}
}

// checkNodeVM checks a VM is built as a Kubernetes node VM for the driver
// and FindByUuid finds it.
func checkNodeVM(t *testing.T, c *clients, vm mo.VirtualMachine, uuid string) {
	t.Helper()
	pvscsi := 0
	for _, d := range vm.Config.Hardware.Device {
		if _, ok := d.(*types.ParaVirtualSCSIController); ok {
			pvscsi++
		}
	}
	uuidOn := false
	for _, o := range vm.Config.ExtraConfig {
		if ov := o.GetOptionValue(); ov.Key == "disk.enableUUID" && ov.Value == "TRUE" {
			uuidOn = true
		}
	}
	if pvscsi != NodeSCSIControllers || !uuidOn || vm.Config.Uuid != uuid {
		t.Errorf("node VM %s: %d PVSCSI controllers, disk.enableUUID %v, uuid %s (want %s)", vm.Name, pvscsi, uuidOn, vm.Config.Uuid, uuid)
	}
	found, err := object.NewSearchIndex(c.vim).FindByUuid(context.Background(), nil, uuid, true, nil)
	if err != nil || found == nil || found.Reference() != vm.Self {
		t.Errorf("FindByUuid(%s) = %v, %v; want %v", uuid, found, err, vm.Self)
	}
}

// checkWorkloadDatastores: each workload host mounts workload-ds and one
// local datastore that no other host mounts; zone B's hosts lack nfs-gold.
func checkWorkloadDatastores(t *testing.T, c *clients, s *Sim) {
	t.Helper()
	var dss []mo.Datastore
	var refs []types.ManagedObjectReference
	for _, d := range s.Datastores() {
		refs = append(refs, types.ManagedObjectReference{Type: "Datastore", Value: d.Ref})
	}
	if err := property.DefaultCollector(c.vim).Retrieve(context.Background(), refs, []string{"name", "host"}, &dss); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]int{}
	for _, d := range dss {
		mounts[d.Name] = len(d.Host)
	}
	workloadHosts := 0
	for _, h := range s.Hosts() {
		switch {
		case h.Cluster == workloadCluster:
			workloadHosts++
			var local []string
			for _, d := range h.Datastores {
				if strings.HasPrefix(d, "wl-local-") {
					local = append(local, d)
				}
			}
			if len(local) != 1 || mounts[local[0]] != 1 || !slices.Contains(h.Datastores, workloadSharedDatastore) {
				t.Errorf("workload host %s mounts %v (local ones mounted by %v hosts)", h.Name, h.Datastores, mounts)
			}
		case h.Zone == ZoneB && slices.Contains(h.Datastores, "nfs-gold"):
			t.Errorf("zone-B host %s mounts nfs-gold", h.Name)
		}
	}
	if workloadHosts != 3 {
		t.Errorf("%d workload hosts, want 3", workloadHosts)
	}
}
