package vcenter

import (
	"errors"
	"net/http"
	"time"
)

// Options configure New.
type Options struct {
	Host     string
	Port     int // 443 when zero
	User     string
	Password string

	// TLS is verified unless Insecure: against CAFile when set, else against
	// Thumbprint (SHA-1, "AA:BB:…") when set, else against the system roots.
	Insecure   bool
	CAFile     string
	Thumbprint string

	// Datacenters scopes the inventory (names or inventory paths); empty
	// means every datacenter.
	Datacenters []string
	// ClusterID is the container-cluster ID recorded on every volume and the
	// filter of FindVolumeByName and ListVolumes.
	ClusterID string
	UserAgent string

	// WatchMaxWait is the longest a property-collector long poll waits
	// (default 4 min). vCenter counts it in whole seconds: at least 1 s.
	WatchMaxWait time.Duration
	// PolicyTTL is how long storage-policy facts are cached (default 5 min).
	PolicyTTL time.Duration
	// TopologyCategories are the tag categories of the topology
	// ([Labels] topology-categories); empty: no topology (topology.go).
	TopologyCategories []string
	// ClusterDistribution is the Kubernetes distribution CNS records for
	// the cluster (cluster-distribution), shown in the vSphere Client.
	ClusterDistribution string
	// FileShareClusters and FileShareDatastoreURLs restrict where file
	// volumes' shares go (targetvSANFileShareClusters: vSAN cluster names;
	// targetvSANFileShareDatastoreURLs); empty: anywhere with File Service.
	FileShareClusters      []string
	FileShareDatastoreURLs []string
	// TopologyRefresh is how often the tags are read again (default 5 min).
	TopologyRefresh time.Duration
	// Nodes, when set, says which VMs are this cluster's nodes (nodes.go):
	// reachability, placement, capacity, topology and the inventory watch
	// cover those only. Nil: every non-template VM of the datacenters is a
	// node (a vCenter that holds only this cluster).
	Nodes NodeSource

	// WrapTransport, when set, wraps the HTTP transport of every SOAP
	// client (vim25, CNS, SPBM): it sees every request.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Observer, when set, is told about every SOAP call and the number of
	// tasks in flight.
	Observer Observer
}

// Observer hears what the client does on the wire; metrics build on it.
// Implementations must be safe for concurrent use and must not block.
type Observer interface {
	// SOAPCall reports one SOAP round trip: the method ("CnsCreateVolume",
	// "WaitForUpdatesEx", …), the fault's type name ("" on success,
	// "NetworkError" when no SOAP answer came back) and its latency.
	SOAPCall(method, fault string, latency time.Duration)
	// TasksInFlight reports how many vCenter tasks the client is waiting on.
	TasksInFlight(n int)
	// LoginRefused reports that vCenter refused the credentials.
	LoginRefused()
	// TasksInDoubt reports that an operation (an opid kind: "create",
	// "snap", "attach") waits for n running tasks that may be this
	// cluster's on the same object before it goes on (tasks.go).
	TasksInDoubt(op string, n int)
	// NodeVMs reports how many VMs of the cluster's nodes the client knows
	// (with Options.Nodes; nodes.go).
	NodeVMs(n int)
	// WatchUpdates reports the object updates one answer of the
	// inventory watch brought (what following vCenter costs).
	WatchUpdates(n int)
}

// The SOAP endpoints of a vCenter the client speaks to (EndpointObserver).
const (
	EndpointVIM  = "vim25" // the vSphere API: inventory, sessions, tasks, property collector
	EndpointCNS  = "cns"   // Cloud Native Storage: volumes, attachments, snapshots
	EndpointPBM  = "pbm"   // SPBM: storage policies and compatibility
	EndpointVSAN = "vsan"  // vSAN health: File Service state
)

// EndpointObserver is an Observer that also wants the endpoint of each SOAP
// call. When the Observer implements it, SOAPCallTo is called instead of
// SOAPCall.
type EndpointObserver interface {
	// SOAPCallTo is SOAPCall with the endpoint (EndpointVIM, EndpointCNS,
	// EndpointPBM, EndpointVSAN) that served the call.
	SOAPCallTo(endpoint, method, fault string, latency time.Duration)
}

// CNSObserver is an Observer that also wants each CNS operation as a whole.
// When the Observer implements it, CNSOperation is called once per object a
// CNS call acts on: for a call that starts a task, from the call to the end
// of its task; a batch task (several volumes attached to one VM) counts
// once per volume, failed or not by that volume's own result.
type CNSObserver interface {
	// CNSOperation reports one CNS operation: its CNS method
	// ("CnsCreateVolume", "CnsAttachVolume", "CnsQueryVolume", …), whether
	// it failed (the call, its task or the object's result) and how long
	// it took.
	CNSOperation(method string, failed bool, took time.Duration)
}

const (
	defaultPort         = 443
	defaultWatchMaxWait = 4 * time.Minute
	defaultPolicyTTL    = 5 * time.Minute
	defaultUserAgent    = "vsphere-csi"
)

func (o *Options) setDefaults() {
	if o.Port == 0 {
		o.Port = defaultPort
	}
	if o.WatchMaxWait <= 0 {
		o.WatchMaxWait = defaultWatchMaxWait
	}
	if o.PolicyTTL <= 0 {
		o.PolicyTTL = defaultPolicyTTL
	}
	if o.TopologyRefresh <= 0 {
		o.TopologyRefresh = defaultTopologyRefresh
	}
	if o.UserAgent == "" {
		o.UserAgent = defaultUserAgent
	}
}

func (o *Options) validate() error {
	switch {
	case o.Host == "":
		return errors.New("vcenter: no host")
	case o.User == "" || o.Password == "":
		return errors.New("vcenter: no user or password")
	case o.ClusterID == "":
		return errors.New("vcenter: no cluster ID")
	}
	return nil
}

// maxWaitSeconds is WatchMaxWait in the whole seconds vCenter takes, at
// least 1: 0 would turn the long poll into a busy poll.
func (o *Options) maxWaitSeconds() int32 {
	s := int32((o.WatchMaxWait + time.Second - 1) / time.Second)
	return max(s, 1)
}

type nopObserver struct{}

func (nopObserver) SOAPCall(string, string, time.Duration) {}
func (nopObserver) TasksInFlight(int)                      {}
func (nopObserver) LoginRefused()                          {}
func (nopObserver) TasksInDoubt(string, int)               {}
func (nopObserver) NodeVMs(int)                            {}
func (nopObserver) WatchUpdates(int)                       {}
