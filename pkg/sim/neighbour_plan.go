package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Which neighbour VMs there are, where, and how each is built
// (neighbour_inventory.go makes them).

// neighbourRole is a kind of workload VM.
type neighbourRole struct {
	role, guest    string
	cpu            int32
	memMB          int64
	osGB, dataGB   int64 // dataGB 0: no data disk
	weight, offPct int
	dev            bool // in the workload cluster's Development pool
}

var neighbourRoles = []neighbourRole{
	{role: "web", guest: "ubuntu64Guest", cpu: 2, memMB: 4096, osGB: 40, weight: 30, offPct: 5},
	{role: "app", guest: "rhel9_64Guest", cpu: 4, memMB: 8192, osGB: 60, dataGB: 100, weight: 25, offPct: 5},
	{role: "db", guest: "rhel9_64Guest", cpu: 8, memMB: 32768, osGB: 80, dataGB: 500, weight: 10, offPct: 5},
	{role: "cache", guest: "ubuntu64Guest", cpu: 2, memMB: 16384, osGB: 40, weight: 10, offPct: 5},
	{role: "build", guest: "ubuntu64Guest", cpu: 8, memMB: 16384, osGB: 100, dataGB: 200, weight: 15, offPct: 40, dev: true},
	{role: "win", guest: "windows2019srv_64Guest", cpu: 4, memMB: 8192, osGB: 90, dataGB: 100, weight: 10, offPct: 15, dev: true},
}

var templateNames = []string{"tmpl-ubuntu-22.04", "tmpl-ubuntu-24.04", "tmpl-rhel-9.4", "tmpl-windows-2022", "tmpl-photon-5.0", "tmpl-debian-12"}

// neighbourCounts splits n VMs into templates, the other cluster's nodes
// and workloads.
func neighbourCounts(n int) (templates, otherNodes, workloads int) {
	if n >= 5 {
		templates = min(max(n/80, 1), len(templateNames))
		otherNodes = min(max(n/50, 2), 10)
	}
	return templates, otherNodes, n - templates - otherNodes
}

// vmPlan is one neighbour VM to make.
type vmPlan struct {
	vm       *neighbourVM
	host     *hostModel
	dirs     []*dsModel // datastores that hold its directory
	spec     *types.VirtualMachineConfigSpec
	template bool
}

// planNeighbours decides every neighbour VM: the other cluster's nodes on
// zone A's hosts, templates on the workload cluster's, workloads on every
// host in turn.
func (inv *inventory) planNeighbours(n Neighbours, dc *simulator.Datacenter) ([]vmPlan, error) {
	rng := rand.New(rand.NewPCG(uint64(n.Seed), 0x766d73)) //nolint:gosec // a repeatable inventory, not security
	ni := inv.neighbours
	templates, otherNodes, workloads := neighbourCounts(n.VMs)
	var zoneA, workload []*hostModel
	for _, h := range inv.hosts {
		switch h.cluster.Self {
		case inv.zoneA:
			zoneA = append(zoneA, h)
		case ni.workload.Self:
			workload = append(workload, h)
		}
	}
	network := dc.Network[0] // "VM Network"
	var plans []vmPlan
	for i := range otherNodes {
		name := fmt.Sprintf("other-k8s-node-%d", i+1)
		home := inv.dsByName["vsanDatastore"]
		spec, err := nodeVMSpec(name, nodeUUID(name), home)
		if err != nil {
			return nil, err
		}
		for _, ch := range spec.DeviceChange { // its directory is made anew (makeNeighbourVM)
			if cs := ch.GetVirtualDeviceConfigSpec(); cs.Device != nil {
				if _, disk := cs.Device.(*types.VirtualDisk); disk {
					cs.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
				}
			}
		}
		spec.DeviceChange = append(spec.DeviceChange, nicChange(network))
		plans = append(plans, vmPlan{
			vm:   &neighbourVM{name: name, kind: NeighbourOtherNode, role: "k8s-node", folder: "Other-K8s", pool: "Other-K8s", on: true},
			host: zoneA[i%len(zoneA)], dirs: []*dsModel{home}, spec: spec,
		})
	}
	for i := range templates {
		h := workload[i%len(workload)]
		role := neighbourRole{guest: templateGuest(templateNames[i]), cpu: 2, memMB: 4096, osGB: 40}
		p := workloadPlan(templateNames[i], role, h, inv.dsByName[workloadSharedDatastore], nil, network)
		p.vm.kind, p.vm.folder, p.vm.pool, p.template = NeighbourTemplate, "Templates", "", true
		plans = append(plans, p)
	}
	all := inv.hosts
	seq := map[string]int{}
	for i := range workloads {
		role := pickRole(rng)
		seq[role.role]++
		h := all[i%len(all)]
		home, data := pickDatastores(rng, h, role)
		p := workloadPlan(fmt.Sprintf("%s-%02d", role.role, seq[role.role]), role, h, home, data, network)
		p.vm.pool = workloadPool(inv, h, role)
		p.vm.on = rng.IntN(100) >= role.offPct
		plans = append(plans, p)
	}
	return plans, nil
}

func templateGuest(name string) string {
	if strings.Contains(name, "windows") {
		return "windows2019srv_64Guest"
	}
	return "ubuntu64Guest"
}

func pickRole(rng *rand.Rand) neighbourRole {
	total := 0
	for _, r := range neighbourRoles {
		total += r.weight
	}
	x := rng.IntN(total)
	for _, r := range neighbourRoles {
		if x < r.weight {
			return r
		}
		x -= r.weight
	}
	return neighbourRoles[0]
}

// pickDatastores picks a VM's home (a datastore its host shares with
// other hosts, so that DRS can move it) and the datastore of its data
// disk, if it has one (any its host mounts, a local one too: such a VM
// stays on its host).
func pickDatastores(rng *rand.Rand, h *hostModel, role neighbourRole) (home, data *dsModel) {
	var shared []*dsModel
	for _, d := range h.datastores {
		if len(d.hosts) > 1 {
			shared = append(shared, d)
		}
	}
	home = shared[rng.IntN(len(shared))]
	if role.dataGB > 0 {
		data = h.datastores[rng.IntN(len(h.datastores))]
	}
	return home, data
}

// workloadPool is the resource pool of a workload VM on host h.
func workloadPool(inv *inventory, h *hostModel, role neighbourRole) string {
	switch {
	case h.cluster.Self == inv.zoneA:
		return "Workloads"
	case h.cluster.Self == inv.zoneB:
		return "Workloads-B"
	case role.dev:
		return "Development"
	}
	return "Production"
}

// workloadPlan is an ordinary VM: an LSI Logic SAS controller, an OS disk
// in its directory on home, a data disk on data (when not nil), a vmxnet3
// NIC on the VM Network.
func workloadPlan(name string, role neighbourRole, h *hostModel, home, data *dsModel, network types.ManagedObjectReference) vmPlan {
	var devices object.VirtualDeviceList
	ctrl, _ := devices.CreateSCSIController("lsilogic-sas")
	devices = append(devices, ctrl)
	change, _ := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	dirs := []*dsModel{home}
	for i, d := range []*dsModel{home, data} {
		if d == nil {
			continue
		}
		file, gb := fmt.Sprintf("[%s] %s/%s.vmdk", d.name, name, name), role.osGB
		if i == 1 {
			file, gb = fmt.Sprintf("[%s] %s/%s_1.vmdk", d.name, name, name), role.dataGB
			if d != home {
				dirs = append(dirs, d)
			}
		}
		disk := devices.CreateDisk(ctrl.(types.BaseVirtualController), d.ref, file)
		disk.CapacityInKB = gb * 1024 * 1024
		devices = append(devices, disk)
		change = append(change, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: types.VirtualDeviceConfigSpecFileOperationCreate, Device: disk,
		})
	}
	change = append(change, nicChange(network))
	spec := &types.VirtualMachineConfigSpec{
		Name: name, GuestId: role.guest, NumCPUs: role.cpu, MemoryMB: role.memMB,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", home.name, name, name)},
		DeviceChange: change,
	}
	return vmPlan{
		vm:   &neighbourVM{name: name, kind: NeighbourWorkload, role: role.role, folder: "Workloads/" + role.role},
		host: h, dirs: dirs, spec: spec,
	}
}

// nicChange adds a vmxnet3 NIC on the network.
func nicChange(network types.ManagedObjectReference) types.BaseVirtualDeviceConfigSpec {
	nic := &types.VirtualVmxnet3{VirtualVmxnet: types.VirtualVmxnet{VirtualEthernetCard: types.VirtualEthernetCard{
		VirtualDevice: types.VirtualDevice{
			Key: -100,
			Backing: &types.VirtualEthernetCardNetworkBackingInfo{
				VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
				Network:                        &network,
			},
		},
		AddressType: string(types.VirtualEthernetCardMacTypeGenerated),
	}}}
	return &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: nic}
}
