package vcenter

import (
	"context"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// Every CreateVolume looks its name up first (exactly once), a CnsQueryVolume
// on the path of every create; in a burst of claims it is the create's
// longest wait after the task itself. The client can often know the
// answer without asking: which names its cluster's volumes have is what
// vCenter had when the client read them, plus what was created since, and
// every create since by any controller of this cluster shows in the watch
// as a task whose operation ID names this cluster and (as a digest) the
// name. So the names are read once (one listing of this cluster's
// volumes, in the background, after the first look-up), and from then on
// a name that is neither among them nor named by such a task is not there:
// FindVolumeByName answers that without a call.
//
// The knowledge holds only while the watch has seen every task: a watch
// that restarts (its connection or session lost, vCenter restarted) may
// have missed one, and the names are read again; only where vCenter
// records operation IDs (else a create of another controller of the
// cluster can't be told from another cluster's); and only while the watch
// is up to date: it is waiting in a long poll, and has been for at least
// watchFresh, so that vCenter had no change to tell (a task started
// earlier would have ended the poll). In the watch's pause between answers
// (after a change, such as a neighbour's task on a shared vCenter) it is
// not; then the look-ups read vCenter's recent tasks themselves (once for
// all the look-ups that arrive together, lookups.go): recentTask lists the
// tasks that are queued, running or completed recently (minutes, far longer
// than the watch lags), so the creates it holds and the index together are
// as complete as an up-to-date watch. Only when the index can't tell does
// the look-up query CNS.
//
// What it gives up against asking: nothing the settle before every create
// (tasks.go) does not give up already. A create by another controller of
// the cluster that is still running is not found by a query either (CNS
// shows a volume only when its task completes); only its task in the watch
// tells of it, in both ways. One that completed is found by a query and,
// here, by its task, which the watch reported unless it started and ended
// within watchFresh before the look-up (a create takes longer).

type nameIndex struct {
	mu      sync.Mutex
	loading bool
	ready   bool
	gen     uint64            // the watch's generation the names belong to
	names   map[string]string // volume name → ID, of the cluster's volumes
	byID    map[string]string // volume ID → name
	others  map[string]bool   // key tags (opid) of this cluster's creates by other processes
}

// watchFresh is how long the watch must have been waiting for vCenter to
// tell of a change for its picture to count as current: what vCenter
// takes to report a change and the answer to arrive, with room.
const watchFresh = 250 * time.Millisecond

// knownAbsent says whether the cluster has certainly no volume named
// name, without asking vCenter: false whenever the index can't tell (not
// read yet, the watch restarted since or is not up to date, operation IDs
// not known to be recorded) or the name is taken or being made.
func (c *client) knownAbsent(name string) bool {
	if since := c.pollingSince.Load(); since == 0 || time.Since(time.Unix(0, since)) < watchFresh {
		return false
	}
	return c.absentInIndex(name)
}

// absentInIndex is knownAbsent without the watch's freshness: right for a
// caller that has just read vCenter's running and recent tasks itself
// (lookups.go), which tells what the watch may not have told yet.
func (c *client) absentInIndex(name string) bool {
	// The waiter's state first: it calls into the index holding its lock
	// (noteOtherCreate), so the index's lock is never held while taking it.
	gen, recorded := c.tasks.generation(), c.tasks.recordsOpIDs()
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.ready || ix.gen != gen || !recorded {
		return false
	}
	if _, ok := ix.names[name]; ok {
		return false
	}
	return !ix.others[opid.Tag(name)]
}

// indexUsable says whether the index could answer if the tasks were
// current (read, of this watch's start, operation IDs recorded).
func (c *client) indexUsable() bool {
	gen, recorded := c.tasks.generation(), c.tasks.recordsOpIDs()
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.ready && ix.gen == gen && recorded
}

// noteName records a volume of the cluster (made or found).
func (c *client) noteName(name, id string) {
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.names == nil || name == "" {
		return
	}
	ix.names[name], ix.byID[id] = id, name
}

// forgetVolume drops a deleted volume.
func (c *client) forgetVolume(id string) {
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if name, ok := ix.byID[id]; ok {
		delete(ix.byID, id)
		if ix.names[name] == id {
			delete(ix.names, name)
		}
	}
}

// noteOtherCreate records a create of this cluster that another process
// started (the watch's task updates call it).
func (c *client) noteOtherCreate(key string) {
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.others != nil {
		ix.others[key] = true
	}
}

// loadNamesSoon reads the cluster's names in the background, unless they
// are current or being read.
func (c *client) loadNamesSoon() {
	gen, recorded := c.tasks.generation(), c.tasks.recordsOpIDs() // before ix.mu: see knownAbsent
	ix := &c.names
	ix.mu.Lock()
	if ix.loading || (ix.ready && ix.gen == gen) || !recorded {
		ix.mu.Unlock()
		return
	}
	// Record other processes' creates from now on, before the listing.
	ix.loading, ix.ready, ix.gen = true, false, gen
	ix.names, ix.byID, ix.others = map[string]string{}, map[string]string{}, map[string]bool{}
	ix.mu.Unlock()
	go func() {
		// A panic (a bug) leaves the index unloaded: look-ups ask vCenter.
		if err := panics.Call("reading the cluster's volume names", func() error { c.loadNames(gen); return nil }); err != nil {
			ix.mu.Lock()
			ix.loading, ix.ready = false, false
			ix.mu.Unlock()
		}
	}()
}

// loadNamesTimeout bounds the listing.
const loadNamesTimeout = 5 * time.Minute

func (c *client) loadNames(gen uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), loadNamesTimeout)
	defer cancel()
	start := time.Now()
	vols, _, err := c.ListVolumes(ctx, 0, 0)
	ix := &c.names
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.loading = false
	if err != nil || ix.gen != gen {
		klog.V(2).InfoS("Reading the cluster's volume names failed or the watch restarted meanwhile; look-ups ask vCenter", "err", err)
		return
	}
	for _, v := range vols {
		ix.names[v.Name], ix.byID[v.ID] = v.ID, v.Name
	}
	ix.ready = true
	klog.V(2).InfoS("The cluster's volume names are known; look-ups of other names need no call", "volumes", len(vols), "took", time.Since(start))
}
