package sim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// The neighbours' inventory, seeded from Neighbours.Seed so that every
// Start makes the same one (the same names on the same hosts, under the
// same references):
//   - a workload cluster, cluster-workloads, of workloadHosts hosts that
//     mount workload-ds (shared) and each a local datastore of its own
//     (wl-local-N), which no other host mounts; no zone tag;
//   - VM folders Workloads/<role>, Templates and Other-K8s under the
//     datacenter's VM folder; resource pools Workloads and Other-K8s in
//     zone A's cluster, Workloads-B in zone B's, Production and
//     Development in the workload cluster;
//   - the VMs, spread over every host in turn: workloads (web-NN, db-NN,
//     ...; some powered off) with a disk or two (not first-class disks)
//     and a NIC, templates (tmpl-ubuntu-22.04, ...) and the other
//     Kubernetes cluster's node VMs (other-k8s-node-N, built as ours are).
// Their disks are thin and nearly empty: they take no space in the
// datastores' model (the free space the driver sees is what our volumes
// and the other cluster's leave).
// The VMs are made through the simulator's own CreateVM_Task in-process,
// without SOAP and without a property collector to wait on (20 ms a VM
// that way, 2 ms this way): real VirtualMachine objects that container
// views, the property collector and FindByUuid see.

const (
	workloadCluster         = "cluster-workloads"
	workloadHosts           = 3
	workloadSharedDatastore = "workload-ds"
)

// Kinds of neighbour VMs.
const (
	NeighbourWorkload  = "workload"
	NeighbourTemplate  = "template"
	NeighbourOtherNode = "other-k8s-node"
)

// neighbourVM is one unrelated VM as it was made.
type neighbourVM struct {
	name, kind, role string
	ref              types.ManagedObjectReference
	folder, pool     string
	host             string
	on               bool
}

// neighbourInventory is what the neighbours added to the inventory.
type neighbourInventory struct {
	workload *simulator.ClusterComputeResource
	vms      []*neighbourVM
	byRef    map[types.ManagedObjectReference]*neighbourVM
	folders  map[string]types.ManagedObjectReference // by path, e.g. "Workloads/web"
	pools    map[string]types.ManagedObjectReference // by name
}

// buildNeighbours adds the neighbours to the inventory.
func (inv *inventory) buildNeighbours(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, opts Options) error {
	n := opts.Neighbours.withDefaults()
	ni := &neighbourInventory{byRef: map[types.ManagedObjectReference]*neighbourVM{}}
	var err error
	if ni.workload, err = inv.buildWorkloadCluster(ctx, c, dc, opts.Dir); err != nil {
		return err
	}
	inv.neighbours = ni
	inv.listHosts()
	if ni.folders, err = makeFolders(ctx, c, dc); err != nil {
		return err
	}
	if ni.pools, err = inv.makePools(ctx, c); err != nil {
		return err
	}
	plans, err := inv.planNeighbours(n, dc)
	if err != nil {
		return err
	}
	root := *inv.model.Service.Context // the SOAP endpoint is not registered yet
	vctx := &root
	for _, p := range plans {
		if err := inv.makeNeighbourVM(vctx, p); err != nil {
			return fmt.Errorf("VM %s: %w", p.vm.name, err)
		}
		ni.vms = append(ni.vms, p.vm)
		ni.byRef[p.vm.ref] = p.vm
	}
	return nil
}

// buildWorkloadCluster adds the workload cluster, its hosts and datastores.
func (inv *inventory) buildWorkloadCluster(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, root string) (*simulator.ClusterComputeResource, error) {
	cl, err := object.NewFolder(c, dc.HostFolder).CreateCluster(ctx, workloadCluster, types.ClusterConfigSpecEx{})
	if err != nil {
		return nil, fmt.Errorf("create cluster %s: %w", workloadCluster, err)
	}
	for i := 1; i <= workloadHosts; i++ {
		task, err := cl.AddHost(ctx, types.HostConnectSpec{HostName: fmt.Sprintf("esx-wl-%d.example.com", i), UserName: "root", Password: "x"}, true, nil, nil)
		if err != nil {
			return nil, err
		}
		if _, err := task.WaitForResult(ctx, nil); err != nil {
			return nil, fmt.Errorf("add host to %s: %w", workloadCluster, err)
		}
	}
	cluster, ok := inv.model.Map().Get(cl.Reference()).(*simulator.ClusterComputeResource)
	if !ok || len(cluster.Host) != workloadHosts {
		return nil, fmt.Errorf("cluster %s has no hosts", workloadCluster)
	}
	shared := datastoreSeed{name: workloadSharedDatastore, capacity: 4 * int64(units.TB), fsType: "NFS"}
	d, err := inv.createDatastore(ctx, c, root, shared, cluster.Self, cluster.Host)
	if err != nil {
		return nil, fmt.Errorf("datastore %s: %w", shared.name, err)
	}
	inv.addDatastore(d)
	for i, h := range cluster.Host {
		local := datastoreSeed{name: fmt.Sprintf("wl-local-%d", i+1), capacity: 800 * int64(units.GB), fsType: "VMFS"}
		d, err := inv.createDatastore(ctx, c, root, local, cluster.Self, []types.ManagedObjectReference{h})
		if err != nil {
			return nil, fmt.Errorf("datastore %s: %w", local.name, err)
		}
		inv.addDatastore(d)
	}
	return cluster, nil
}

// makeFolders makes the neighbours' VM folders.
func makeFolders(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter) (map[string]types.ManagedObjectReference, error) {
	out := map[string]types.ManagedObjectReference{}
	root := object.NewFolder(c, dc.VmFolder)
	paths := []string{"Workloads", "Templates", "Other-K8s"}
	for _, r := range neighbourRoles {
		paths = append(paths, "Workloads/"+r.role)
	}
	for _, p := range paths {
		parent := root
		if dir, _, ok := strings.Cut(p, "/"); ok {
			parent = object.NewFolder(c, out[dir])
		}
		f, err := parent.CreateFolder(ctx, p[strings.LastIndex(p, "/")+1:])
		if err != nil {
			return nil, fmt.Errorf("folder %s: %w", p, err)
		}
		out[p] = f.Reference()
	}
	return out, nil
}

// makePools makes the neighbours' resource pools, each in its cluster's
// root pool.
func (inv *inventory) makePools(ctx context.Context, c *vim25.Client) (map[string]types.ManagedObjectReference, error) {
	r := inv.model.Map()
	byCluster := []struct {
		cluster types.ManagedObjectReference
		names   []string
	}{
		{inv.zoneA, []string{"Workloads", "Other-K8s"}},
		{inv.zoneB, []string{"Workloads-B"}},
		{inv.neighbours.workload.Self, []string{"Production", "Development"}},
	}
	out := map[string]types.ManagedObjectReference{}
	for _, bc := range byCluster {
		cl, ok := r.Get(bc.cluster).(*simulator.ClusterComputeResource)
		if !ok {
			return nil, fmt.Errorf("no cluster %s", bc.cluster.Value)
		}
		for _, name := range bc.names {
			p, err := object.NewResourcePool(c, *cl.ResourcePool).Create(ctx, name, types.DefaultResourceConfigSpec())
			if err != nil {
				return nil, fmt.Errorf("resource pool %s: %w", name, err)
			}
			out[name] = p.Reference()
		}
	}
	return out, nil
}

// makeNeighbourVM makes a planned VM: its directories new, through the
// simulator's CreateVM_Task in-process, then powered on or made a
// template.
func (inv *inventory) makeNeighbourVM(vctx *simulator.Context, p vmPlan) error {
	ni := inv.neighbours
	for _, d := range inv.datastores { // of an earlier run (a Storage vMotion may have moved it)
		if err := os.RemoveAll(filepath.Join(d.dir, p.vm.name)); err != nil {
			return err
		}
	}
	for _, d := range p.dirs {
		if err := os.MkdirAll(filepath.Join(d.dir, p.vm.name), 0o750); err != nil {
			return err
		}
	}
	pool := ni.pools[p.vm.pool]
	if p.vm.pool == "" {
		pool = *p.host.cluster.ResourcePool
	}
	ref, err := createVMInProcess(vctx, ni.folders[p.vm.folder], pool, p.host.ref, *p.spec)
	if err != nil {
		return err
	}
	p.vm.ref, p.vm.host = ref, p.host.name
	vm, ok := vctx.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return fmt.Errorf("%s is not a VM", ref.Value)
	}
	switch {
	case p.template:
		return markTemplate(vctx, vm, pool)
	case p.vm.on:
		// Nobody watches yet: the state is set as PowerOnVM_Task sets it.
		now := time.Now()
		vctx.WithLock(vm, func() {
			vm.Runtime.PowerState, vm.Summary.Runtime.PowerState = types.VirtualMachinePowerStatePoweredOn, types.VirtualMachinePowerStatePoweredOn
			vm.Runtime.BootTime, vm.Summary.Runtime.BootTime = &now, &now
		})
	}
	return nil
}

// createVMInProcess runs the simulator's CreateVM_Task in-process, waits
// for it and drops its task (the inventory's making is long past).
func createVMInProcess(vctx *simulator.Context, folder, pool, host types.ManagedObjectReference, spec types.VirtualMachineConfigSpec) (types.ManagedObjectReference, error) {
	f, ok := vctx.Map.Get(folder).(*simulator.Folder)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("no folder %s", folder.Value)
	}
	var body *methods.CreateVM_TaskBody
	vctx.WithLock(f, func() {
		body, _ = f.CreateVMTask(vctx, &types.CreateVM_Task{This: folder, Config: spec, Pool: pool, Host: &host}).(*methods.CreateVM_TaskBody)
	})
	if body == nil || body.Res == nil {
		return types.ManagedObjectReference{}, fmt.Errorf("CreateVM_Task failed to start")
	}
	info := waitTask(vctx, body.Res.Returnval)
	forgetTask(vctx, body.Res.Returnval, info.Entity)
	if info.Error != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("CreateVM_Task: %s", faultMessage(info.Error.Fault))
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("CreateVM_Task returned %T", info.Result)
	}
	return ref, nil
}

// markTemplate makes a powered-off VM a template, which has no resource
// pool.
func markTemplate(vctx *simulator.Context, vm *simulator.VirtualMachine, pool types.ManagedObjectReference) error {
	var fault error
	vctx.WithLock(vm, func() {
		if f := vm.MarkAsTemplate(&types.MarkAsTemplate{This: vm.Self}).Fault(); f != nil {
			fault = fmt.Errorf("mark as template: %s", f.String)
		}
	})
	if fault != nil {
		return fault
	}
	if rp, ok := vctx.Map.Get(pool).(*simulator.ResourcePool); ok {
		vctx.Map.RemoveReference(vctx, rp, &rp.Vm, vm.Self)
	}
	return nil
}
