package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// A real vCenter is shared: hundreds of VMs that are not this cluster's
// nodes (other workloads, templates, other clusters' nodes) on hosts that
// do not all mount the same datastores, tasks that are not ours running
// all the time, other Kubernetes clusters' CNS volumes. Options.Neighbours
// makes the embedded vCenter such a one:
//   - neighbour_inventory.go: the unrelated VMs, their folders and
//     resource pools, and a workload cluster whose hosts each have a local
//     datastore of their own;
//   - neighbour_tasks.go: background tasks of vCenter's, other users' and
//     schedules' (what a real vCenter shows for each, with sources);
//   - neighbour_cns.go: another Kubernetes cluster's CNS volumes,
//     snapshots and CNS calls, under the same vCenter user.

// Neighbours configure the neighbours. The zero value means none.
type Neighbours struct {
	// VMs is how many VMs there are besides this cluster's nodes: other
	// workloads (running and powered off), a few templates and, from 5 on,
	// another Kubernetes cluster's node VMs, spread over every host.
	VMs int `json:"vms,omitempty"`
	// TasksPerMinute is how many background tasks start a minute, of all
	// kinds together, at random times (a Poisson process).
	TasksPerMinute float64 `json:"tasksPerMinute,omitempty"`
	// OtherClusterVolumes is how many CNS volumes the other Kubernetes
	// cluster has at the first start on a Dir (some with snapshots, some
	// attached to its node VMs); they are kept across restarts, as ours.
	OtherClusterVolumes int `json:"otherClusterVolumes,omitempty"`
	// OtherClusterID is that cluster's cluster-id; "" = DefaultOtherClusterID.
	OtherClusterID string `json:"otherClusterID,omitempty"`
	// User starts the Storage vMotions; "" = the user the simulator
	// accepts, the driver's own (the worst case for a driver that waits
	// for its user's tasks). The other cluster's CNS calls are always
	// the simulator's user's.
	User string `json:"user,omitempty"`
	// Seed makes the names, placement, task kinds and durations
	// repeatable; 0 = 1.
	Seed int64 `json:"seed,omitempty"`
}

// DefaultOtherClusterID is the other Kubernetes cluster's cluster-id.
const DefaultOtherClusterID = "neighbour-cluster"

// BackupUser is the user that takes backup snapshots, as vCenter names
// the initiator of its tasks (callerName).
const BackupUser = `VSPHERE.LOCAL\backup-svc`

func (n Neighbours) enabled() bool {
	return n.VMs > 0 || n.TasksPerMinute > 0 || n.OtherClusterVolumes > 0
}

// withDefaults fills in the defaults.
func (n Neighbours) withDefaults() Neighbours {
	if n.OtherClusterID == "" {
		n.OtherClusterID = DefaultOtherClusterID
	}
	if n.Seed == 0 {
		n.Seed = 1
	}
	return n
}

// shapeNeighbours takes the neighbours from the kept state when the
// options ask for none, and refuses other ones: records of the kept state
// name the neighbours' VMs by reference (the other cluster's attachments)
// and node VMs added after them, which only the same neighbours give back.
func shapeNeighbours(opts *Options, kept *meta, addedNodes int) error {
	if opts.Neighbours.enabled() {
		opts.Neighbours = opts.Neighbours.withDefaults()
	}
	if kept == nil {
		return nil
	}
	if kept.Neighbours == nil {
		if opts.Neighbours.enabled() && addedNodes > 0 {
			return fmt.Errorf("the state in %s has node VMs added without neighbours: start without neighbours, or on a new --dir", opts.Dir)
		}
		return nil
	}
	if !opts.Neighbours.enabled() {
		opts.Neighbours = *kept.Neighbours
		return nil
	}
	k, o := *kept.Neighbours, opts.Neighbours
	if k.VMs != o.VMs || k.Seed != o.Seed || k.OtherClusterID != o.OtherClusterID {
		return fmt.Errorf("the state in %s was kept with %d neighbour VMs (seed %d, other cluster %q), not %d (seed %d, %q): start with the same, or on a new --dir",
			opts.Dir, k.VMs, k.Seed, k.OtherClusterID, o.VMs, o.Seed, o.OtherClusterID)
	}
	return nil
}

// NeighbourTaskKind is a kind of background task (neighbour_tasks.go).
type NeighbourTaskKind string

// The kinds of background tasks.
const (
	NeighbourDRSMigration      NeighbourTaskKind = "drs-migration"          // DRS moves a running VM (ours too) to another host of its cluster
	NeighbourStorageVMotion    NeighbourTaskKind = "storage-vmotion"        // a user moves an unrelated VM's files to another datastore
	NeighbourBackupSnapshot    NeighbourTaskKind = "backup-snapshot"        // the backup user snapshots a VM (ours too); its removal follows
	NeighbourBackupRemove      NeighbourTaskKind = "backup-snapshot-remove" // the backup user removes its snapshot
	NeighbourScheduledPower    NeighbourTaskKind = "scheduled-power"        // a scheduled task powers an unrelated VM off or on
	NeighbourCNSCreate         NeighbourTaskKind = "cns-create"             // the other cluster creates a volume
	NeighbourCNSDelete         NeighbourTaskKind = "cns-delete"             // the other cluster deletes one of its volumes
	NeighbourCNSSnapshot       NeighbourTaskKind = "cns-snapshot"           // the other cluster snapshots one of its volumes
	NeighbourCNSDeleteSnapshot NeighbourTaskKind = "cns-delete-snapshot"    // the other cluster deletes one of its snapshots
)

// neighbourWeights is how often each kind is picked (per 100 tasks). A
// backup's removal is not picked: it follows its snapshot.
var neighbourWeights = []struct {
	kind   NeighbourTaskKind
	weight int
}{
	{NeighbourDRSMigration, 30},
	{NeighbourStorageVMotion, 8},
	{NeighbourBackupSnapshot, 20},
	{NeighbourScheduledPower, 10},
	{NeighbourCNSCreate, 10},
	{NeighbourCNSDelete, 7},
	{NeighbourCNSSnapshot, 8},
	{NeighbourCNSDeleteSnapshot, 7},
}

// NeighbourTaskKinds lists every kind.
func NeighbourTaskKinds() []NeighbourTaskKind {
	out := []NeighbourTaskKind{}
	for _, w := range neighbourWeights {
		out = append(out, w.kind)
	}
	return append(out, NeighbourBackupRemove)
}

// errNoCandidate: nothing in the inventory this kind of task can act on now.
var errNoCandidate = errors.New("nothing to act on")

// neighbourhood runs the neighbours' tasks.
type neighbourhood struct {
	s    *Sim
	opts Neighbours

	mu      sync.Mutex
	rng     *rand.Rand                                                    // task kinds, targets, durations; guarded by mu
	started map[NeighbourTaskKind]int                                     // tasks started, by kind
	backups map[types.ManagedObjectReference]types.ManagedObjectReference // VM → its backup snapshot
	sched   map[string]types.ManagedObjectReference                       // "<vm>/<method>" → its ScheduledTask

	// pickMu serializes picking a task's target; target, when set, is
	// the one VM a task may act on (StartNeighbourTaskOn).
	pickMu sync.Mutex
	target *types.ManagedObjectReference
}

// startNeighbours makes the neighbours' runner and, at the first start on
// a Dir, the other cluster's volumes.
func (s *Sim) startNeighbours(kept *meta) error {
	if !s.opts.Neighbours.enabled() {
		return nil
	}
	n := s.opts.Neighbours
	s.nb = &neighbourhood{
		s: s, opts: n,
		rng:     rand.New(rand.NewPCG(uint64(n.Seed), 0x7461736b73)), //nolint:gosec // repeatable picks, not security
		started: map[NeighbourTaskKind]int{},
		backups: map[types.ManagedObjectReference]types.ManagedObjectReference{},
		sched:   map[string]types.ManagedObjectReference{},
	}
	if kept != nil && kept.Neighbours != nil {
		return nil // its volumes are in the kept state
	}
	return s.seedOtherCluster()
}

// run starts background tasks at the configured rate until stop.
func (nb *neighbourhood) run(stop <-chan struct{}) {
	if nb.opts.TasksPerMinute <= 0 {
		return
	}
	for {
		nb.mu.Lock()
		gap := time.Duration(nb.rng.ExpFloat64() / nb.opts.TasksPerMinute * float64(time.Minute))
		kind := nb.pickKind()
		nb.mu.Unlock()
		t := time.NewTimer(gap)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		nb.startAny(kind)
	}
}

// pickKind picks a kind by neighbourWeights (caller holds mu).
func (nb *neighbourhood) pickKind() NeighbourTaskKind {
	total := 0
	for _, w := range neighbourWeights {
		total += w.weight
	}
	r := nb.rng.IntN(total)
	for _, w := range neighbourWeights {
		if r < w.weight {
			return w.kind
		}
		r -= w.weight
	}
	return NeighbourCNSCreate
}

// startAny starts a task of kind or, when there is nothing it can act on,
// of the next kind that can: every arrival starts a task.
func (nb *neighbourhood) startAny(kind NeighbourTaskKind) {
	first := 0
	for i, w := range neighbourWeights {
		if w.kind == kind {
			first = i
		}
	}
	for i := range neighbourWeights {
		k := neighbourWeights[(first+i)%len(neighbourWeights)].kind
		_, err := nb.start(k, 0)
		if err == nil {
			return
		}
		if !errors.Is(err, errNoCandidate) {
			klog.V(2).InfoS("Neighbour task did not start", "kind", k, "err", err)
		}
	}
}

// StartNeighbourTask starts one background task of kind now, running for
// d (0: the kind's realistic duration, see neighbour_tasks.go), and
// returns its task. An error when the inventory has nothing this kind can
// act on (no VM another host can take, no volume of the other cluster...).
func (s *Sim) StartNeighbourTask(kind NeighbourTaskKind, d time.Duration) (types.ManagedObjectReference, error) {
	if s.nb == nil {
		return types.ManagedObjectReference{}, errors.New("the vCenter has no neighbours (Options.Neighbours)")
	}
	return s.nb.start(kind, d)
}

// StartNeighbourTaskOn is StartNeighbourTask acting on the VM named vm (a
// neighbour's or a node's), for the kinds that act on a VM (a DRS
// migration, a Storage vMotion, a backup snapshot, a scheduled power
// operation); an error when that VM is not one this kind can act on.
func (s *Sim) StartNeighbourTaskOn(kind NeighbourTaskKind, vm string, d time.Duration) (types.ManagedObjectReference, error) {
	if s.nb == nil {
		return types.ManagedObjectReference{}, errors.New("the vCenter has no neighbours (Options.Neighbours)")
	}
	ref, ok := s.vmByName(vm)
	if !ok {
		return types.ManagedObjectReference{}, fmt.Errorf("no VM named %q", vm)
	}
	return s.nb.startOn(kind, &ref, d)
}

// vmByName finds a node VM or a neighbour VM by name.
func (s *Sim) vmByName(name string) (types.ManagedObjectReference, bool) {
	for _, n := range s.NodeVMs() {
		if n.Name == name {
			return types.ManagedObjectReference{Type: "VirtualMachine", Value: n.Ref}, true
		}
	}
	for _, v := range s.NeighbourVMs() {
		if v.Name == name {
			return types.ManagedObjectReference{Type: "VirtualMachine", Value: v.Ref}, true
		}
	}
	return types.ManagedObjectReference{}, false
}

// NeighbourTaskCounts is how many neighbour tasks have started, by kind
// (those StartNeighbourTask started too).
func (s *Sim) NeighbourTaskCounts() map[NeighbourTaskKind]int {
	out := map[NeighbourTaskKind]int{}
	if s.nb == nil {
		return out
	}
	s.nb.mu.Lock()
	defer s.nb.mu.Unlock()
	for k, v := range s.nb.started {
		out[k] = v
	}
	return out
}

// start builds the task of kind and starts it.
func (nb *neighbourhood) start(kind NeighbourTaskKind, d time.Duration) (types.ManagedObjectReference, error) {
	return nb.startOn(kind, nil, d)
}

// startOn is start acting on vm only (nil: any).
func (nb *neighbourhood) startOn(kind NeighbourTaskKind, vm *types.ManagedObjectReference, d time.Duration) (types.ManagedObjectReference, error) {
	vctx := nb.s.vimContext()
	nb.pickMu.Lock()
	nb.target = vm
	spec, err := nb.spec(vctx, kind, d)
	nb.target = nil
	nb.pickMu.Unlock()
	if err != nil {
		return types.ManagedObjectReference{}, fmt.Errorf("%s: %w", kind, err)
	}
	return nb.launch(kind, vctx, spec), nil
}

// spec is the task of kind, its target picked now.
func (nb *neighbourhood) spec(vctx *simulator.Context, kind NeighbourTaskKind, d time.Duration) (taskSpec, error) {
	switch kind {
	case NeighbourDRSMigration:
		return nb.drsMigration(vctx, d)
	case NeighbourStorageVMotion:
		return nb.storageVMotion(vctx, d)
	case NeighbourBackupSnapshot:
		return nb.backupSnapshot(vctx, d)
	case NeighbourBackupRemove:
		return nb.backupRemove(vctx, d)
	case NeighbourScheduledPower:
		return nb.scheduledPower(vctx, d)
	case NeighbourCNSCreate, NeighbourCNSDelete, NeighbourCNSSnapshot, NeighbourCNSDeleteSnapshot:
		return nb.cnsTask(vctx, kind, d)
	}
	return taskSpec{}, fmt.Errorf("no neighbour task kind %q (kinds: %v)", kind, NeighbourTaskKinds())
}

// spread is base spread by ±50% (the seeded source), or d when given.
func (nb *neighbourhood) spread(base, d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return time.Duration(float64(base) * (0.5 + nb.rng.Float64()))
}

// pick is a random index below n (the seeded source).
func (nb *neighbourhood) pick(n int) int {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.rng.IntN(n)
}

// chance is true with probability p (the seeded source).
func (nb *neighbourhood) chance(p float64) bool {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.rng.Float64() < p
}

// vimContext is a context of its own for one in-process operation: the
// simulator's object locks are held on behalf of a context, so two
// operations that shared one would not exclude each other.
func (s *Sim) vimContext() *simulator.Context {
	return s.model.Service.Context.For(vim25.Path)
}
