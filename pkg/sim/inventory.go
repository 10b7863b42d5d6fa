package sim

import (
	"context"
	"crypto/sha1" //nolint:gosec // deterministic IDs, not security
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/uuid"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/units"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// datastoreSeed is one datastore of the seeded inventory.
type datastoreSeed struct {
	name     string
	capacity int64
	fsType   string
	oneHost  bool // mounted on the first host only
	vsan     bool // its cluster's vSAN datastore (vsan_fileshares.go, vsan_health.go)
}

// The seeded datastores: three shared ones of different sizes and one that
// only the first host sees. vsanDatastore is a vSAN datastore by its info
// (VsanDatastoreInfo) but not by summary.type: typed "vsan", the simulator
// would rename its top-level directories (fcd/) to UUIDs that a restart
// does not keep.
var datastoreSeeds = []datastoreSeed{
	{name: "vsanDatastore", capacity: 2 * int64(units.TB), fsType: "VMFS", vsan: true},
	{name: "nfs-gold", capacity: 500 * int64(units.GB), fsType: "NFS"},
	{name: "silver-ds", capacity: 1 * int64(units.TB), fsType: "VMFS"},
	{name: "local-ds-0", capacity: 200 * int64(units.GB), fsType: "VMFS", oneHost: true},
}

// dsModel is the simulator's own model of one datastore: capacity and use
// are model numbers, not the host filesystem's.
type dsModel struct {
	name      string
	ref       types.ManagedObjectReference
	url       string // summary.url (a local directory path, see Datastores)
	dir       string // local directory
	capacity  int64
	used      int64 // guarded by inventory.mu
	filled    int64 // taken by other workloads (FillDatastore); guarded by inventory.mu
	hostNames []string
	hosts     []types.ManagedObjectReference
	cluster   types.ManagedObjectReference // the cluster of its hosts
	vsan      bool                         // the cluster's vSAN datastore
}

type nodeVM struct {
	name     string
	uuid     string
	ref      types.ManagedObjectReference
	hostName string // guarded by inventory.nodeMu: a DRS migration moves it (neighbour_tasks.go)
	byIDDir  string
	zone     string // the zone tag of its cluster (inventory_tags.go), "" for an untagged one

	// What happened to it since it was seeded (vim_vmops.go).
	poweredOff, deleted atomicBool
}

type inventory struct {
	model     *simulator.Model
	collector types.ManagedObjectReference // the root PropertyCollector (vim_collector.go)
	dcName    string
	dc        types.ManagedObjectReference

	datastores []*dsModel
	dsByRef    map[types.ManagedObjectReference]*dsModel
	dsByName   map[string]*dsModel
	hosts      []*hostModel // every host, in cluster order (inventory_hosts.go)

	// nodeMu guards nodes, nodeByRef and each node's hostName: AddNodeVM
	// adds nodes while the vCenter serves (inventory_nodes.go).
	nodeMu    sync.RWMutex
	nodes     []*nodeVM
	nodeByRef map[types.ManagedObjectReference]*nodeVM

	// neighbours is what Options.Neighbours added to the inventory (nil
	// when none): unrelated VMs, the workload cluster (neighbour_inventory.go).
	neighbours *neighbourInventory

	// The zones (inventory_tags.go): the first cluster is zone A, zoneB the second.
	zoneA, zoneB types.ManagedObjectReference
	zoneBCluster *simulator.ClusterComputeResource

	mu sync.Mutex // guards dsModel.used

	// simMu serializes our in-process calls into the simulator that touch
	// datastores. The simulator reads Datastore objects without their lock
	// (Datastore.resolve copies the whole object), so writing freeSpace
	// while a disk is created or a VM reconfigured elsewhere is a data race.
	simMu sync.Mutex
}

// withSim runs fn holding simMu.
func (inv *inventory) withSim(fn func()) {
	inv.simMu.Lock()
	defer inv.simMu.Unlock()
	fn()
}

// buildInventory seeds the inventory: zone A's datastores, zone B, the
// node VMs, the neighbours (when opts ask for them), then the node VMs
// added at run time in an earlier run (added), in this order so that every
// object a kept state names gets the reference it had (state.go).
func buildInventory(ctx context.Context, m *simulator.Model, opts Options, added []addedNodeRecord) (*inventory, error) {
	c, err := vim25.NewClient(ctx, m.Service)
	if err != nil {
		return nil, err
	}
	inv := &inventory{
		model:     m,
		collector: c.ServiceContent.PropertyCollector,
		dsByRef:   map[types.ManagedObjectReference]*dsModel{},
		dsByName:  map[string]*dsModel{},
		nodeByRef: map[types.ManagedObjectReference]*nodeVM{},
	}
	dc, ok := m.Map().Any("Datacenter").(*simulator.Datacenter)
	if !ok {
		return nil, fmt.Errorf("model has no datacenter")
	}
	inv.dcName, inv.dc = dc.Name, dc.Self
	cluster, ok := m.Map().Any("ClusterComputeResource").(*simulator.ClusterComputeResource)
	if !ok {
		return nil, fmt.Errorf("model has no cluster")
	}
	hosts := cluster.Host
	if len(hosts) < 3 {
		return nil, fmt.Errorf("cluster has %d hosts, want >= 3", len(hosts))
	}
	for _, seed := range datastoreSeeds {
		d, err := inv.createDatastore(ctx, c, opts.Dir, seed, cluster.Self, hosts)
		if err != nil {
			return nil, fmt.Errorf("datastore %s: %w", seed.name, err)
		}
		inv.datastores = append(inv.datastores, d)
		inv.dsByRef[d.ref] = d
		inv.dsByName[d.name] = d
	}
	inv.zoneA = cluster.Self
	if err := inv.buildZoneB(ctx, c, dc, opts.Dir); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.NodeVMs; i++ {
		n, err := inv.createNodeVM(ctx, c, dc, cluster, i, opts.ByIDRoot)
		if err != nil {
			return nil, fmt.Errorf("node VM %d: %w", i, err)
		}
		inv.addNode(n)
	}
	for i := 1; i <= opts.ZoneBNodeVMs; i++ {
		n, err := inv.createNodeVM(ctx, c, dc, inv.zoneBCluster, i, opts.ByIDRoot)
		if err != nil {
			return nil, fmt.Errorf("zone-b node VM %d: %w", i, err)
		}
		inv.addNode(n)
	}
	if opts.Neighbours.enabled() {
		if err := inv.buildNeighbours(ctx, c, dc, opts); err != nil {
			return nil, fmt.Errorf("neighbours: %w", err)
		}
	}
	inv.listHosts()
	if err := inv.restoreAddedNodes(ctx, c, dc, opts.ByIDRoot, added); err != nil {
		return nil, err
	}
	return inv, nil
}

// addNode makes n one of the node VMs.
func (inv *inventory) addNode(n *nodeVM) {
	inv.nodeMu.Lock()
	defer inv.nodeMu.Unlock()
	inv.nodes = append(inv.nodes, n)
	inv.nodeByRef[n.ref] = n
}

// nodeList is the node VMs in creation order (a copy of the list).
func (inv *inventory) nodeList() []*nodeVM {
	inv.nodeMu.RLock()
	defer inv.nodeMu.RUnlock()
	return append([]*nodeVM(nil), inv.nodes...)
}

// nodeOf finds the node VM of a managed object reference.
func (inv *inventory) nodeOf(ref types.ManagedObjectReference) (*nodeVM, bool) {
	inv.nodeMu.RLock()
	defer inv.nodeMu.RUnlock()
	n, ok := inv.nodeByRef[ref]
	return n, ok
}

// datastoreID is a deterministic VMFS-like volume ID for a datastore name.
func datastoreID(name string) string {
	h := sha1.Sum([]byte("vsphere-sim/datastore/" + name)) //nolint:gosec
	return fmt.Sprintf("%x-%x-%x-%x", h[0:4], h[4:8], h[8:10], h[10:16])
}

func (inv *inventory) createDatastore(ctx context.Context, c *vim25.Client, root string, seed datastoreSeed, cluster types.ManagedObjectReference, hosts []types.ManagedObjectReference) (*dsModel, error) {
	dir := filepath.Join(root, "vmfs", "volumes", datastoreID(seed.name))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	url := dir + "/"
	mount := hosts
	if seed.oneHost {
		mount = hosts[:1]
	}
	var ref types.ManagedObjectReference
	for _, h := range mount {
		dss, err := object.NewHostSystem(c, h).ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return nil, err
		}
		ds, err := dss.CreateLocalDatastore(ctx, seed.name, url)
		if err != nil {
			return nil, err
		}
		if ref.Value == "" { // later hosts get an empty reference back
			ref = ds.Reference()
		}
	}
	d := &dsModel{name: seed.name, ref: ref, url: url, dir: dir, capacity: seed.capacity, hosts: mount, cluster: cluster, vsan: seed.vsan}
	for _, h := range mount {
		d.hostNames = append(d.hostNames, entityName(inv.model.Map(), h))
	}
	ds, ok := inv.model.Map().Get(ref).(*simulator.Datastore)
	if !ok {
		return nil, fmt.Errorf("datastore %s not in the registry", ref)
	}
	// Nobody watches yet: set the model numbers directly.
	ds.Summary.Type = seed.fsType
	ds.Summary.Capacity = seed.capacity
	ds.Summary.FreeSpace = seed.capacity
	info := ds.Info.GetDatastoreInfo()
	info.FreeSpace = seed.capacity
	info.MaxFileSize = seed.capacity
	info.MaxVirtualDiskCapacity = seed.capacity
	if seed.vsan {
		ds.Info = &types.VsanDatastoreInfo{DatastoreInfo: *info, MembershipUuid: datastoreID("vsan-membership/" + seed.name)}
	}
	return d, nil
}

// nodeUUID is a deterministic BIOS UUID for a node VM name (VMware BIOS
// UUIDs of vCenter-created VMs start with 42).
func nodeUUID(name string) string {
	u := uuid.NewSHA1(uuid.NameSpaceURL, []byte("vsphere-sim/node/"+name))
	u[0] = 0x42
	return u.String()
}

// createNodeVM makes seeded node VM i of a zone's cluster: k8s-node-i in
// zone A, k8s-node-b-i in zone B, its hosts in turn.
func (inv *inventory) createNodeVM(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, cluster *simulator.ClusterComputeResource, i int, byIDRoot string) (*nodeVM, error) {
	name := fmt.Sprintf("k8s-node-%d", i)
	if cluster.Self == inv.zoneB {
		name = fmt.Sprintf("k8s-node-b-%d", i)
	}
	return inv.makeNodeVM(ctx, c, dc, cluster, cluster.Host[(i-1)%len(cluster.Host)], name, byIDRoot)
}

// homeDatastore is where a node VM of a cluster keeps its files: the
// cluster's datastore that all its hosts mount.
func (inv *inventory) homeDatastore(cluster types.ManagedObjectReference) string {
	switch {
	case cluster == inv.zoneA:
		return "vsanDatastore"
	case cluster == inv.zoneB:
		return zoneBDatastores[0].name
	case inv.neighbours != nil && cluster == inv.neighbours.workload.Self:
		return workloadSharedDatastore
	}
	return ""
}

// zoneOf is the zone tag of a cluster, "" when it has none.
func (inv *inventory) zoneOf(cluster types.ManagedObjectReference) string {
	switch cluster {
	case inv.zoneA:
		return ZoneA
	case inv.zoneB:
		return ZoneB
	}
	return ""
}

// makeNodeVM makes a node VM (nodeVMSpec) on host, a host of cluster, in
// the cluster's root resource pool, and powers it on.
func (inv *inventory) makeNodeVM(ctx context.Context, c *vim25.Client, dc *simulator.Datacenter, cluster *simulator.ClusterComputeResource,
	host types.ManagedObjectReference, name, byIDRoot string) (*nodeVM, error) {
	home := inv.homeDatastore(cluster.Self)
	n := &nodeVM{
		name:     name,
		uuid:     nodeUUID(name),
		hostName: entityName(inv.model.Map(), host),
		byIDDir:  filepath.Join(byIDRoot, name),
		zone:     inv.zoneOf(cluster.Self),
	}
	if err := os.MkdirAll(n.byIDDir, 0o750); err != nil {
		return nil, err
	}
	homeDS, ok := inv.dsByName[home]
	if !ok {
		return nil, fmt.Errorf("node VM %s: no datastore %q", name, home)
	}
	spec, err := nodeVMSpec(name, n.uuid, homeDS)
	if err != nil {
		return nil, err
	}
	folder := object.NewFolder(c, dc.VmFolder)
	pool := object.NewResourcePool(c, *cluster.ResourcePool)
	hs := object.NewHostSystem(c, host)
	task, err := folder.CreateVM(ctx, *spec, pool, hs)
	if err != nil {
		return nil, err
	}
	res, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return nil, err
	}
	n.ref = res.Result.(types.ManagedObjectReference)
	// The simulator charged the OS disk to its datastore; so does the model.
	inv.reserve(homeDS, osDiskKB*1024)
	vm := object.NewVirtualMachine(c, n.ref)
	if task, err = vm.PowerOn(ctx); err != nil {
		return nil, err
	}
	if err := task.Wait(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// nodeVMSpec is a Kubernetes node VM as it is built for the vSphere CSI
// driver: NodeSCSIControllers PVSCSI controllers, an OS disk on SCSI 0:0
// in the VM's directory on homeDS (which leaves 59 units for volumes:
// vSphere's 4 × 15, minus the OS disk), disk.enableUUID so that the guest
// sees disk UUIDs. The OS disk is made unless a kept state dir still has
// it from a previous run.
func nodeVMSpec(name, biosUUID string, homeDS *dsModel) (*types.VirtualMachineConfigSpec, error) {
	var devices object.VirtualDeviceList
	for range NodeSCSIControllers {
		scsi, err := devices.CreateSCSIController("pvscsi")
		if err != nil {
			return nil, err
		}
		devices = append(devices, scsi)
	}
	change, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return nil, err
	}
	home := homeDS.name
	osDisk := devices.CreateDisk(devices[0].(types.BaseVirtualController), homeDS.ref, "["+home+"] "+name+"/"+name+".vmdk")
	osDisk.CapacityInKB = osDiskKB
	osChange := &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: osDisk}
	if _, err := os.Stat(filepath.Join(homeDS.dir, name, name+".vmdk")); err != nil {
		osChange.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
	}
	change = append(change, osChange)
	return &types.VirtualMachineConfigSpec{
		Name:         name,
		GuestId:      string(types.VirtualMachineGuestOsIdentifierUbuntu64Guest),
		Uuid:         biosUUID,
		NumCPUs:      4,
		MemoryMB:     8192,
		Files:        &types.VirtualMachineFileInfo{VmPathName: "[" + home + "]"},
		DeviceChange: change,
		ExtraConfig:  []types.BaseOptionValue{&types.OptionValue{Key: "disk.enableUUID", Value: "TRUE"}},
		Version:      fmt.Sprintf("vmx-%d", NodeHardwareVersion),
	}, nil
}

func entityName(r *simulator.Registry, ref types.ManagedObjectReference) string {
	if e, ok := r.Get(ref).(mo.Entity); ok {
		return e.Entity().Name
	}
	return ref.Value
}

// reserve adds bytes to the datastore's use when they fit.
func (inv *inventory) reserve(d *dsModel, bytes int64) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if d.capacity-d.used-d.filled < bytes {
		return false
	}
	d.used += bytes
	return true
}

// force adds bytes to the datastore's use whether they fit or not (a
// volume kept across a restart is there, full datastore or not).
func (inv *inventory) force(d *dsModel, bytes int64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.used += bytes
}

// fill makes other workloads take all but free bytes (free < 0: none).
func (inv *inventory) fill(d *dsModel, free int64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.filled = 0
	if free >= 0 {
		d.filled = max(0, d.capacity-d.used-free)
	}
}

func (inv *inventory) setFilled(d *dsModel, bytes int64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.filled = max(0, bytes)
}

func (inv *inventory) filledBytes(d *dsModel) int64 {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return d.filled
}

// release gives bytes back.
func (inv *inventory) release(d *dsModel, bytes int64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	d.used = max(0, d.used-bytes)
}

// space is (capacity, free) of the model.
func (inv *inventory) space(d *dsModel) (int64, int64) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return d.capacity, max(0, d.capacity-d.used-d.filled)
}

// publish writes the model's free space to the Datastore object through the
// registry's update mechanism, so property-collector watches see it.
func (inv *inventory) publish(ctx *simulator.Context, d *dsModel) {
	inv.withSim(func() { inv.publishLocked(ctx, d) })
}

// publishLocked is publish for callers holding simMu.
func (inv *inventory) publishLocked(ctx *simulator.Context, d *dsModel) {
	ds, ok := ctx.Map.Get(d.ref).(*simulator.Datastore)
	if !ok {
		return
	}
	_, free := inv.space(d)
	ctx.WithLock(ds, func() {
		ds.Info.GetDatastoreInfo().FreeSpace = free
		ctx.Update(ds, []types.PropertyChange{
			{Name: "summary.freeSpace", Val: free},
			{Name: "summary.capacity", Val: d.capacity},
		})
	})
}
