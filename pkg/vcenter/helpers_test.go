package vcenter

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/rtcount"
)

// recorder is an Observer that keeps the SOAP methods called.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	inFlight int
	refused  int
	inDoubt  map[string]int // operation → tasks waited for
}

func (r *recorder) NodeVMs(int)      {}
func (r *recorder) WatchUpdates(int) {}

func (r *recorder) TasksInDoubt(op string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inDoubt == nil {
		r.inDoubt = map[string]int{}
	}
	r.inDoubt[op] += n
}

// waited returns how many tasks in doubt operations of kind op waited for.
func (r *recorder) waited(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inDoubt[op]
}

func (r *recorder) LoginRefused() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused++
}

func (r *recorder) SOAPCall(method, fault string, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fault != "" {
		method += "!" + fault
	}
	r.calls = append(r.calls, method)
}

func (r *recorder) TasksInFlight(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight = n
}

// since returns the calls recorded after mark (a previous len).
func (r *recorder) since(mark int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls[mark:]...)
}

func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

type testEnv struct {
	sim *sim.Sim
	c   *client
	n   *rtcount.Counter
	rec *recorder
	// counted: tasks running (tasks_scope_test.go) already counted.
	counted map[string]bool
}

func simOptions(s *sim.Sim) Options {
	return Options{
		Host:        s.Host(),
		Port:        s.Port(),
		User:        s.Username(),
		Password:    s.Password(),
		Thumbprint:  s.Thumbprint(),
		Datacenters: []string{s.Datacenter()},
		ClusterID:   "test-cluster",
		UserAgent:   "vsphere-csi-test",
	}
}

// newEnv starts a simulator and a client on it; tweak adjusts the options.
func newEnv(t testing.TB, nodeVMs int, tweak func(*Options)) *testEnv {
	t.Helper()
	s := simtest.Start(t, sim.Options{NodeVMs: nodeVMs})
	return connectEnv(t, s, tweak)
}

func connectEnv(t testing.TB, s *sim.Sim, tweak func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{sim: s, n: &rtcount.Counter{}, rec: &recorder{}, counted: map[string]bool{}}
	opts := simOptions(s)
	opts.WrapTransport = e.n.Wrap
	opts.Observer = e.rec
	if tweak != nil {
		tweak(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	e.c = c.(*client)
	return e
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// placeable returns the IDs of the datastores that are compatible with the
// policy and reachable, as the driver picks them.
func placeable(t testing.TB, c Client, policyID string) []string {
	t.Helper()
	dss, err := c.Datastores(ctxT(t), policyID)
	if err != nil {
		t.Fatalf("Datastores: %v", err)
	}
	var ids []string
	for _, d := range dss {
		if d.Reachable && (policyID == "" || d.Compatible) {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("no placeable datastore for policy %q in %+v", policyID, dss)
	}
	return ids
}

// settle waits until no HTTP request has been made for quiet.
func (e *testEnv) settle(quiet time.Duration) {
	last := e.n.Count()
	for {
		time.Sleep(quiet)
		now := e.n.Count()
		if now == last {
			return
		}
		last = now
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
