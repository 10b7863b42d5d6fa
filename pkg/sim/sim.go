package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/cns"
	"github.com/vmware/govmomi/pbm"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vsan"

	// Registers the SPBM endpoint (/pbm) with the simulator.
	_ "github.com/vmware/govmomi/pbm/simulator"
)

// Default credentials the simulator accepts.
const (
	DefaultUsername = "administrator@vsphere.local"
	DefaultPassword = "Sim-Passw0rd!"
	DefaultListen   = "127.0.0.1:0"
	DefaultNodeVMs  = 3
)

// A node VM has NodeSCSIControllers PVSCSI controllers (vSphere's maximum)
// of 15 disk units each (unit 7 is the controller's own) and an OS disk on
// SCSI 0:0: room for NodeVolumeSlots volumes, the driver's default
// per-node limit.
const (
	NodeSCSIControllers = 4
	NodeVolumeSlots     = NodeSCSIControllers*15 - 1
	// osDiskKB is the OS disk's size: a placeholder that holds the OS
	// disk's SCSI unit, small so it hardly moves the datastores' free space.
	osDiskKB = 64 * 1024
)

// Options configure Start.
type Options struct {
	// Dir is the state root: datastore directories, data files and, in
	// Dir/state, everything a vCenter keeps across a restart (state.go).
	// Start on a Dir that has state brings that state back. "" = a new
	// temporary directory, removed on Close.
	Dir     string
	Listen  string // "127.0.0.1:0" default; with port 0 a restart takes the address it had
	NodeVMs int    // number of node VMs, default 3 (or as kept in Dir)
	// ZoneBNodeVMs is the number of node VMs in zone B (inventory_tags.go), default
	// 0: the node VMs above are in zone A.
	ZoneBNodeVMs int
	Hypervisor   bool   // node side: attach -> loop device + by-id link (needs root)
	ByIDRoot     string // node VM i's by-id dir is ByIDRoot/<vm name>; default Dir/by-id
	Username     string // default DefaultUsername
	Password     string // default DefaultPassword
	// Latency is how long calls and tasks take (lab_latency.go); zero: at once.
	Latency Latency
	// NFSAddress is the IP address the vSAN file shares are served on
	// (port 2049), e.g. a node address that other network namespaces
	// reach; "" = a loopback address of its own (nfs.go).
	NFSAddress string
	// Neighbours make it a shared vCenter: unrelated VMs, a workload
	// cluster, background tasks that are not ours, another Kubernetes
	// cluster's volumes (neighbour.go). The zero value: none.
	Neighbours Neighbours
	// Release is the vCenter release it says it is and answers as: a CNS
	// method that release lacks is MethodNotFound (server_release.go). ""
	// = DefaultRelease.
	Release string
}

// NodeVM is a Kubernetes node VM of this cluster (seeded, or added with
// AddNodeVM).
type NodeVM struct {
	Name    string
	UUID    string // BIOS UUID, lowercase dashed
	ByIDDir string // where the hypervisor puts wwn-0x<diskUUID> links for this VM
	Host    string // name of the host it runs on (a DRS migration moves it)
	Ref     string // managed object ID, e.g. "vm-42"
	Zone    string // the k8s-zone tag of its host's cluster: ZoneA, ZoneB, "" for an untagged one
	State   string // "poweredOn", "poweredOff" or "deleted" (vim_vmops.go)
}

// DatastoreInfo describes a seeded datastore.
type DatastoreInfo struct {
	Name          string
	Ref           string // managed object ID, e.g. "datastore-17"
	URL           string // summary.url
	Dir           string // local directory backing it
	CapacityBytes int64
	FreeBytes     int64
	Hosts         []string // names of the hosts it is mounted on
	Policies      []string // names of the policies it is compatible with
}

// Sim is a running embedded vCenter.
type Sim struct {
	opts    Options
	tempDir bool

	model *simulator.Model
	wire  *wire
	url   *url.URL
	cert  atomic.Pointer[serverCert] // what the server presents (server_tls.go)

	inv      *inventory
	policies *policyMap
	cns      *volumeManager
	vsan     *vsanSystem
	nfs      *nfsServer
	hv       hypervisor
	lab      *lab // latency, faults, events
	store    *store

	nb    *neighbourhood // nil without neighbours (neighbour.go)
	addMu sync.Mutex     // one AddNodeVM at a time (inventory_nodes.go)

	creds    atomic.Pointer[credentials]
	syncDone chan struct{}
	fcdMu    sync.Mutex
	keptFCDs map[string]fcdRecord // what syncFCDsOnce last wrote
	repairs  int                  // kept records that needed repair at Start (state_restore.go)

	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
}

// Start builds the inventory (bringing back the state kept in Dir, if
// any), starts the SOAP server and installs the faithful overrides. Close
// (or Stop) it when done.
func Start(ctx context.Context, opts Options) (_ *Sim, err error) {
	s := &Sim{opts: opts, lab: newLab(opts.Latency), syncDone: make(chan struct{})}
	explicitNodeVMs := opts.NodeVMs > 0
	if err := s.defaults(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.store, err = openStore(s.opts.Dir); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	kept, err := s.store.loadMeta()
	if err != nil {
		return nil, err
	}
	if err := shapeOptions(&s.opts, kept, explicitNodeVMs); err != nil {
		return nil, err
	}
	added, err := s.store.addedNodes()
	if err != nil {
		return nil, err
	}
	if err := shapeNeighbours(&s.opts, kept, len(added)); err != nil {
		return nil, err
	}

	rel, err := lookupRelease(s.opts.Release)
	if err != nil {
		return nil, err
	}
	s.lab.release = rel
	s.model = simulator.VPX()
	rel.apply(s.model)
	s.model.Host = 0
	s.model.Portgroup = 0
	s.model.Datastore = 0
	s.model.Machine = 0
	s.model.ClusterHost = 3
	if err := s.model.Create(); err != nil {
		return nil, fmt.Errorf("create model: %w", err)
	}
	if s.inv, err = buildInventory(ctx, s.model, s.opts, added); err != nil {
		return nil, err
	}
	installCollector(s.model, s.inv.collector)
	if kept != nil {
		if err := s.checkShape(kept); err != nil {
			return nil, err
		}
	}
	if err := s.startServer(kept); err != nil {
		return nil, err
	}
	if s.policies, err = installPolicies(s.model, s.inv); err != nil {
		return nil, err
	}
	if err := s.seedTags(ctx); err != nil {
		return nil, fmt.Errorf("seed tags: %w", err)
	}
	if opts.Hypervisor {
		s.hv = newLoopHypervisor()
	} else {
		s.hv = nopHypervisor{}
	}
	s.cns = newVolumeManager(s.inv, s.policies, s.hv, s.lab, s.store)
	s.vsan = newVsanSystem(s.inv, s.store)
	if err := s.vsan.restore(); err != nil {
		return nil, fmt.Errorf("bring back the clusters kept in %s: %w", s.store.dir, err)
	}
	s.cns.vsan = s.vsan
	keptNFS := ""
	if kept != nil {
		keptNFS = kept.NFS
	}
	s.nfs = startNFS(s.cns, opts.NFSAddress, keptNFS)
	s.cns.nfs = s.nfs
	maxTask, err := s.restore(ctx)
	if err != nil {
		return nil, fmt.Errorf("bring back the state kept in %s: %w", s.store.dir, err)
	}
	if kept != nil {
		s.passTaskNumbers(max(kept.MaxTask, maxTask))
	}
	if err := s.startNeighbours(kept); err != nil {
		return nil, fmt.Errorf("neighbours: %w", err)
	}
	s.cns.register(s.model.Service)
	s.vsan.register(s.model.Service)
	forgetSeedTasks(s.model.Service.Context.For(vim25.Path))
	s.installHooks()
	if err := s.saveMeta(); err != nil {
		return nil, err
	}
	go s.syncFCDs()
	if s.nb != nil {
		go s.nb.run(s.lab.stopping())
	}
	klog.InfoS("vCenter simulator started", "url", s.URL(), "dir", s.opts.Dir, "nodeVMs", len(s.inv.nodeList()),
		"hypervisor", opts.Hypervisor, "restored", kept != nil, "volumes", s.cns.count(), "latency", s.lab.latency.Load().String(),
		"neighbourVMs", s.opts.Neighbours.VMs, "neighbourTasksPerMinute", s.opts.Neighbours.TasksPerMinute)
	return s, nil
}

// installHooks puts the lab's dispatch hook (injected SOAP faults, call
// latency) in front of the SOAP endpoints the driver uses.
func (s *Sim) installHooks() {
	s.lab.internal = s.internalClient
	tasks := &vmTasks{b: s.lab}
	tasks.Self = vmTasksRef
	s.model.Map().Put(tasks)
	for _, path := range []string{vim25.Path, pbm.Path, cns.Path, vsan.Path} {
		if c := s.model.Service.Context.For(path); c.Map != nil {
			c.Map.Handler = s.lab.dispatch
		}
	}
}

// passTaskNumbers makes the next task references larger than any a
// previous run may have handed out.
func (s *Sim) passTaskNumbers(n int64) {
	if n <= 0 {
		return
	}
	setRefCounter(s.model, n+taskRefGap)
	s.lab.maxTask.Store(n + taskRefGap)
}

// counterMark is a placeholder object that moves the registry's counter.
type counterMark struct{ Self types.ManagedObjectReference }

func (c *counterMark) Reference() types.ManagedObjectReference { return c.Self }

func (s *Sim) saveMeta() error {
	m := meta{
		NodeVMs: s.opts.NodeVMs, ZoneBNodeVMs: s.opts.ZoneBNodeVMs, Listen: s.HostPort(),
		VMs: map[string]string{}, Datastores: map[string]string{}, MaxTask: s.lab.maxTask.Load(),
		NFS: s.NFSAddress(),
	}
	if s.opts.Neighbours.enabled() {
		nb := s.opts.Neighbours
		m.Neighbours = &nb
	}
	for _, n := range s.inv.nodeList() {
		m.VMs[n.name] = n.ref.Value
	}
	for _, d := range s.inv.datastores {
		m.Datastores[d.name] = d.ref.Value
	}
	return s.store.saveMeta(m)
}

func (s *Sim) defaults() error {
	if s.opts.Listen == "" {
		s.opts.Listen = DefaultListen
	}
	if s.opts.NodeVMs <= 0 {
		s.opts.NodeVMs = DefaultNodeVMs
	}
	if s.opts.Username == "" {
		s.opts.Username = DefaultUsername
	}
	if s.opts.Password == "" {
		s.opts.Password = DefaultPassword
	}
	if s.opts.Dir == "" {
		dir, err := os.MkdirTemp("", "vsphere-sim-")
		if err != nil {
			return err
		}
		s.opts.Dir, s.tempDir = dir, true
	}
	dir, err := filepath.Abs(s.opts.Dir)
	if err != nil {
		return err
	}
	s.opts.Dir = dir
	if s.opts.ByIDRoot == "" {
		s.opts.ByIDRoot = filepath.Join(s.opts.Dir, "by-id")
	}
	return os.MkdirAll(s.opts.Dir, 0o750)
}

// startServer starts the HTTPS server on the kept address and certificate
// when there are (so that a restart keeps the thumbprint and the address
// in csi-vsphere.conf valid), else on new ones. The simulator registers
// its handlers on a server of its own, which is then replaced by ours on
// the same address.
func (s *Sim) startServer(kept *meta) (err error) {
	cert, err := s.certificate()
	if err != nil {
		return err
	}
	s.cert.Store(cert)
	listen := s.opts.Listen
	if kept != nil && kept.Listen != "" && listenPortZero(listen) {
		if ln, err := net.Listen("tcp", kept.Listen); err == nil {
			_ = ln.Close()
			listen = kept.Listen
		} else {
			klog.InfoS("The address of the previous run is taken; listening on a new one (csi-vsphere.conf must follow)", "was", kept.Listen, "err", err)
		}
	}
	svc := s.model.Service
	svc.TLS = s.serverTLS()
	svc.Listen = &url.URL{Host: listen, User: url.UserPassword(s.opts.Username, s.opts.Password)}
	s.creds.Store(&credentials{user: s.opts.Username, password: s.opts.Password})
	s.model.Map().SessionManager().ValidLogin = s.acceptLogin
	svc.RegisterEndpoints = true
	var throwaway *simulator.Server
	func() {
		defer func() { // the simulator panics when it cannot listen
			if r := recover(); r != nil {
				err = fmt.Errorf("start server on %s: %v", listen, r)
			}
		}()
		throwaway = svc.NewServer()
	}()
	if err != nil {
		return err
	}
	u := *throwaway.URL
	u.User = nil
	s.url = &u
	throwaway.Close()
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", u.Host, err)
	}
	s.wire = newWire(s.lab, svc.ServeMux, ln, s.serverTLS())
	return nil
}

func listenPortZero(listen string) bool {
	_, port, err := net.SplitHostPort(listen)
	return err == nil && (port == "0" || port == "")
}

// URL is the SDK URL, "https://127.0.0.1:PORT/sdk" (no credentials).
func (s *Sim) URL() string { return s.url.String() }

// Host is the host part of the URL.
func (s *Sim) Host() string { return s.url.Hostname() }

// Port is the TCP port the simulator listens on.
func (s *Sim) Port() int {
	p, _ := strconv.Atoi(s.url.Port())
	return p
}

// HostPort is "host:port".
func (s *Sim) HostPort() string { return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port())) }

// Thumbprint is the SHA-1 thumbprint of the TLS certificate, "AA:BB:…".
func (s *Sim) Thumbprint() string { return s.cert.Load().thumb }

// Username and Password are the credentials the simulator accepts.
func (s *Sim) Username() string { return s.creds.Load().user }

// Password is the password the simulator accepts.
func (s *Sim) Password() string { return s.creds.Load().password }

type credentials struct{ user, password string }

// SetPassword changes the password the vCenter accepts from now on, as an
// admin rotating the driver's account does; sessions already open stay.
func (s *Sim) SetPassword(password string) {
	s.creds.Store(&credentials{user: s.Username(), password: password})
	s.lab.events.add(Event{Kind: EventSessions, Detail: "password changed"})
	klog.InfoS("vCenter simulator: the password was changed", "user", s.Username())
}

// acceptLogin is the SessionManager's (and the vAPI endpoint's) check.
func (s *Sim) acceptLogin(req *types.Login) bool {
	c := s.creds.Load()
	return req.UserName == c.user && req.Password == c.password
}

// Datacenter is the name of the seeded datacenter.
func (s *Sim) Datacenter() string { return s.inv.dcName }

// NodeVMs lists the node VMs in creation order (seeded, then added).
func (s *Sim) NodeVMs() []NodeVM {
	nodes := s.inv.nodeList()
	out := make([]NodeVM, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, s.inv.nodeInfo(n))
	}
	return out
}

// nodeInfo is a node VM as NodeVMs reports it.
func (inv *inventory) nodeInfo(n *nodeVM) NodeVM {
	state := "poweredOn"
	switch {
	case n.deleted.get():
		state = "deleted"
	case n.poweredOff.get():
		state = "poweredOff"
	}
	inv.nodeMu.RLock()
	host := n.hostName
	inv.nodeMu.RUnlock()
	return NodeVM{Name: n.name, UUID: n.uuid, ByIDDir: n.byIDDir, Host: host, Ref: n.ref.Value, Zone: n.zone, State: state}
}

// Datastores lists the datastores with their current capacity and free space.
func (s *Sim) Datastores() []DatastoreInfo {
	out := make([]DatastoreInfo, 0, len(s.inv.datastores))
	for _, d := range s.inv.datastores {
		capacity, free := s.inv.space(d)
		out = append(out, DatastoreInfo{
			Name: d.name, Ref: d.ref.Value, URL: d.url, Dir: d.dir,
			CapacityBytes: capacity, FreeBytes: free,
			Hosts:    append([]string(nil), d.hostNames...),
			Policies: s.policies.policiesFor(d.name),
		})
	}
	return out
}

// VolumeFile is the path of the volume's data file (<ds dir>/fcd/<id>-flat.vmdk).
func (s *Sim) VolumeFile(volumeID string) (string, bool) {
	return s.cns.volumeFile(volumeID)
}

// StopOptions say how Stop stops the vCenter.
type StopOptions struct {
	// RunningTasks is what becomes of the operations whose tasks still run.
	RunningTasks TaskFate
}

// Stop stops the vCenter as a restart of a real one does: clients lose
// their connections and sessions, running tasks end (their task objects
// are gone; opts.RunningTasks says whether their operations happened), and
// everything else stays: the state in Dir, and on the node side the node
// VMs' disks with their loop devices, links and what is mounted from them
// (a vCenter restart does not touch running VMs). Start on the same Dir
// brings the vCenter back; Close afterwards only removes a temporary Dir.
func (s *Sim) Stop(opts StopOptions) {
	s.stopOnce.Do(func() {
		if s.wire != nil {
			s.wire.close()
		}
		s.nfs.close() // mounts stay; their calls fail until the vCenter is back
		s.lab.halt(opts.RunningTasks, 10*time.Second)
		close(s.syncDone)
		if s.cns != nil {
			s.syncFCDsOnce()
			if err := s.saveMeta(); err != nil {
				klog.ErrorS(err, "vCenter simulator: keeping the state failed")
			}
		}
		if s.hv != nil {
			s.hv = nopHypervisor{} // the node side stays as it is
			if s.cns != nil {
				s.cns.hv = s.hv
			}
		}
		if s.model != nil && s.model.Service != nil {
			s.model.Remove()
		}
		klog.InfoS("vCenter simulator stopped; its state is kept", "dir", s.opts.Dir)
	})
}

// Close stops the vCenter and the node side with it: every loop device is
// detached (what was mounted from it unmounted) and the links removed; a
// temporary Dir is removed. The state in a Dir of one's own stays, so a
// later Start brings the volumes back and attaches their disks again.
// Safe to call more than once, and after Stop.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		hv := s.hv
		s.Stop(StopOptions{RunningTasks: TasksAbandoned})
		var errs []error
		if hv != nil { // nopHypervisor after an earlier Stop
			errs = append(errs, hv.closeAll())
		}
		if s.tempDir {
			errs = append(errs, os.RemoveAll(s.opts.Dir))
		}
		s.closeErr = errors.Join(errs...)
		klog.InfoS("vCenter simulator closed", "dir", s.opts.Dir, "err", s.closeErr)
	})
	return s.closeErr
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
