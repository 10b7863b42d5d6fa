// Package sim is the embedded vCenter: govmomi's simulator (vcsim) with the
// parts the CSI driver depends on made faithful: a seeded inventory, finite
// datastores with capacity accounting, policy-aware SPBM placement, a CNS
// volume manager of our own (real attach through ReconfigVM, per-disk UUIDs,
// paging cursors, faults instead of panics) and an optional node-side
// "hypervisor" that turns an attach into a loop device with a by-id link.
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
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"

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
	Dir     string // state root (datastore dirs, data files); "" = a new temp dir, removed on Close
	Listen  string // "127.0.0.1:0" default
	NodeVMs int    // number of node VMs, default 3
	// ZoneBNodeVMs is the number of node VMs in zone B (tags.go), default
	// 0: the node VMs above are in zone A.
	ZoneBNodeVMs int
	Hypervisor   bool   // node side: attach -> loop device + by-id link (needs root)
	ByIDRoot     string // node VM i's by-id dir is ByIDRoot/<vm name>; default Dir/by-id
	Username     string // default DefaultUsername
	Password     string // default DefaultPassword
}

// NodeVM is a seeded Kubernetes node VM.
type NodeVM struct {
	Name    string
	UUID    string // BIOS UUID, lowercase dashed
	ByIDDir string // where the hypervisor puts wwn-0x<diskUUID> links for this VM
	Host    string // name of the host it runs on
	Ref     string // managed object ID, e.g. "vm-42"
	Zone    string // the k8s-zone tag of its host's cluster: ZoneA or ZoneB
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

	model  *simulator.Model
	server *simulator.Server
	url    *url.URL
	thumb  string

	inv      *inventory
	policies *policyMap
	cns      *volumeManager
	hv       hypervisor

	closeOnce sync.Once
	closeErr  error
}

// Start builds the inventory, starts the SOAP server and installs the
// faithful overrides. Close it when done.
func Start(ctx context.Context, opts Options) (_ *Sim, err error) {
	s := &Sim{opts: opts}
	if err := s.defaults(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()

	s.model = simulator.VPX()
	s.model.Host = 0
	s.model.Portgroup = 0
	s.model.Datastore = 0
	s.model.Machine = 0
	s.model.ClusterHost = 3
	if err := s.model.Create(); err != nil {
		return nil, fmt.Errorf("create model: %w", err)
	}
	if s.inv, err = buildInventory(ctx, s.model, s.opts); err != nil {
		return nil, err
	}
	if err := s.startServer(); err != nil {
		return nil, err
	}
	if s.policies, err = installPolicies(s.model, s.inv); err != nil {
		return nil, err
	}
	if err := s.seedTags(ctx); err != nil { // tags.go
		return nil, fmt.Errorf("seed tags: %w", err)
	}
	if opts.Hypervisor {
		s.hv = newLoopHypervisor()
	} else {
		s.hv = nopHypervisor{}
	}
	s.cns = newVolumeManager(s.inv, s.policies, s.hv)
	s.cns.register(s.model.Service)
	klog.InfoS("vCenter simulator started", "url", s.URL(), "dir", s.opts.Dir, "nodeVMs", len(s.inv.nodes), "hypervisor", opts.Hypervisor)
	return s, nil
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

func (s *Sim) startServer() (err error) {
	cert, thumb, err := selfSignedCert(s.opts.Listen)
	if err != nil {
		return err
	}
	s.thumb = thumb
	svc := s.model.Service
	svc.TLS = cert
	svc.Listen = &url.URL{Host: s.opts.Listen, User: url.UserPassword(s.opts.Username, s.opts.Password)}
	svc.RegisterEndpoints = true
	defer func() { // the simulator panics when it cannot listen
		if r := recover(); r != nil {
			err = fmt.Errorf("start server on %s: %v", s.opts.Listen, r)
		}
	}()
	s.server = svc.NewServer()
	u := *s.server.URL
	u.User = nil
	s.url = &u
	return nil
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
func (s *Sim) Thumbprint() string { return s.thumb }

// Username and Password are the credentials the simulator accepts.
func (s *Sim) Username() string { return s.opts.Username }

// Password is the password the simulator accepts.
func (s *Sim) Password() string { return s.opts.Password }

// Datacenter is the name of the seeded datacenter.
func (s *Sim) Datacenter() string { return s.inv.dcName }

// Service is the underlying simulator service, for fault injection
// (AddFaultRule) in tests.
func (s *Sim) Service() *simulator.Service { return s.model.Service }

// NodeVMs lists the node VMs in creation order.
func (s *Sim) NodeVMs() []NodeVM {
	out := make([]NodeVM, 0, len(s.inv.nodes))
	for _, n := range s.inv.nodes {
		out = append(out, NodeVM{Name: n.name, UUID: n.uuid, ByIDDir: n.byIDDir, Host: n.hostName, Ref: n.ref.Value, Zone: n.zone})
	}
	return out
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

// Close detaches every loop device, removes the links, stops the server and
// removes the temp dir (when Start made it). Safe to call more than once.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.server != nil {
			s.stopServer()
		}
		if s.hv != nil {
			errs = append(errs, s.hv.closeAll())
		}
		if s.model != nil && s.model.Service != nil {
			s.model.Remove()
		}
		if s.tempDir {
			errs = append(errs, os.RemoveAll(s.opts.Dir))
		}
		s.closeErr = errors.Join(errs...)
		klog.InfoS("vCenter simulator stopped", "dir", s.opts.Dir, "err", s.closeErr)
	})
	return s.closeErr
}

// stopServer closes the listener and every client connection, then waits
// a little for handlers. A WaitForUpdates long-poll whose client vanished
// without cancelling never returns in the simulator: do not hang on it.
func (s *Sim) stopServer() {
	done := make(chan struct{})
	go func() {
		s.server.CloseClientConnections()
		s.server.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		klog.InfoS("server close timed out: a client left a WaitForUpdates long-poll open; continuing")
	}
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
