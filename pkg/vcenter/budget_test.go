package vcenter

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
)

// TestRoundTripBudget counts the HTTP requests of a steady-state
// FindVolumeByName + CreateVolume, everything included: the two CNS calls
// and the watch's long-poll answers that carry the task's progress and the
// datastore's new free space. The count is taken from just before the
// lookup until no request has been made for a while after the create.
func TestRoundTripBudget(t *testing.T) {
	const budget = 4
	for _, nodes := range []int{3, 30} {
		t.Run(fmt.Sprintf("%dnodes", nodes), func(t *testing.T) {
			e := newEnv(t, nodes, nil)
			ctx := ctxT(t)
			gold, err := e.c.PolicyByName(ctx, "Gold")
			if err != nil {
				t.Fatal(err)
			}
			candidates := placeable(t, e.c, gold.ID)
			create := func(name string) (Volume, error) {
				if _, err := e.c.FindVolumeByName(ctx, name); !errors.Is(err, ErrVolumeNotFound) {
					return Volume{}, fmt.Errorf("FindVolumeByName(%s) = %v; want ErrVolumeNotFound", name, err)
				}
				// What the driver does per CreateVolume: policy and datastores
				// from the caches, then create.
				if _, err := e.c.PolicyByName(ctx, "Gold"); err != nil {
					return Volume{}, err
				}
				if _, err := e.c.Datastores(ctx, gold.ID); err != nil {
					return Volume{}, err
				}
				return e.c.CreateVolume(ctx, CreateSpec{Name: name, CapacityBytes: gib, PolicyID: gold.ID, DatastoreIDs: candidates})
			}
			if _, err := create("warm-up"); err != nil {
				t.Fatal(err)
			}
			e.settle(300 * time.Millisecond)

			worst := 0
			for i := range 5 {
				before, mark := e.n.Count(), e.rec.mark()
				if _, err := create(fmt.Sprintf("pvc-budget-%d", i)); err != nil {
					t.Fatal(err)
				}
				e.settle(300 * time.Millisecond)
				n := int(e.n.Count() - before)
				t.Logf("%d node VMs: FindVolumeByName+CreateVolume = %d HTTP requests: %v", nodes, n, e.rec.since(mark))
				worst = max(worst, n)
			}
			if worst > budget {
				t.Errorf("%d node VMs: worst FindVolumeByName+CreateVolume = %d HTTP requests; budget %d", nodes, worst, budget)
			}
		})
	}
}

// TestIdleCalls: while idle the client makes only the watch's long polls,
// one per WatchMaxWait. vCenter counts MaxWaitSeconds in whole seconds, so
// the test uses 1 s and checks the rate: at most window/WatchMaxWait + 1
// calls, all WaitForUpdatesEx. At the default 4 min that is at most
// 300/240 + 1 = 2 calls per 5 minutes.
func TestIdleCalls(t *testing.T) {
	const maxWait = time.Second
	e := newEnv(t, 3, func(o *Options) { o.WatchMaxWait = maxWait })
	e.settle(300 * time.Millisecond)
	const window = 5 * time.Second
	before, mark := e.n.Count(), e.rec.mark()
	time.Sleep(window)
	n := int(e.n.Count() - before)
	calls := e.rec.since(mark)
	limit := int(window/maxWait) + 1
	t.Logf("idle for %v with WatchMaxWait %v: %d HTTP requests %v (limit %d)", window, maxWait, n, calls, limit)
	if n > limit {
		t.Errorf("%d requests while idle; want at most %d", n, limit)
	}
	for _, m := range calls {
		if m != "WaitForUpdatesEx" {
			t.Errorf("idle call %s; want only WaitForUpdatesEx", m)
		}
	}
	if n == 0 {
		t.Errorf("no long poll in %v: the session is not kept alive", window)
	}
	if err := e.c.Healthy(ctxT(t)); err != nil {
		t.Errorf("Healthy: %v", err)
	}
}

// TestReloginAfterSessionTerminated: an administrator terminates the
// driver's session from another client; the next call logs in again
// transparently and the watch (and with it the task waiter) recovers.
func TestReloginAfterSessionTerminated(t *testing.T) {
	e := newEnv(t, 3, func(o *Options) { o.WatchMaxWait = time.Second })
	ctx := ctxT(t)
	candidates := placeable(t, e.c, "")

	admin := adminClient(t, e)
	var sm mo.SessionManager
	if err := admin.pc.RetrieveOne(ctx, *admin.vim.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, s := range sm.SessionList {
		if s.Key != sm.CurrentSession.Key && s.UserAgent == "vsphere-csi-test" {
			keys = append(keys, s.Key)
		}
	}
	if len(keys) == 0 {
		t.Fatalf("the driver's session is not in %+v", sm.SessionList)
	}
	if err := admin.sm.TerminateSession(ctx, keys); err != nil {
		t.Fatalf("TerminateSession: %v", err)
	}

	// A CNS call right away: NotAuthenticated, re-login, retried.
	mark := e.rec.mark()
	if _, err := e.c.FindVolumeByName(ctx, "after-terminate"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("FindVolumeByName after TerminateSession = %v; want ErrVolumeNotFound", err)
	}
	t.Logf("calls around the re-login: %v", e.rec.since(mark))

	// A whole create (task waited on through the watch) works too.
	vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "after-terminate", CapacityBytes: gib, DatastoreIDs: candidates})
	if err != nil {
		t.Fatalf("CreateVolume after re-login: %v", err)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, e.sim.NodeVMs()[0].UUID); err != nil {
		t.Fatalf("AttachVolume after re-login: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.c.Healthy(ctx) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.c.Healthy(ctx); err != nil {
		t.Errorf("Healthy after re-login: %v", err)
	}

	// And once more through Logout of the session itself.
	if err := session.NewManager(&vim25.Client{Client: e.c.conn.vim.Client, ServiceContent: e.c.conn.vim.ServiceContent, RoundTripper: e.c.conn.vim.Client}).Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	// SPBM authenticates by a header cookie: it follows the re-login too.
	if _, err := e.c.PolicyByName(ctx, "Gold"); err != nil {
		t.Fatalf("PolicyByName after Logout: %v", err)
	}
	if _, err := e.c.Volume(ctx, vol.ID); err != nil {
		t.Fatalf("Volume after Logout: %v", err)
	}
}

type adminConn struct {
	vim *vim25.Client
	sm  *session.Manager
	pc  *property.Collector
}

// adminClient is another client logged in to the simulator.
func adminClient(t *testing.T, e *testEnv) *adminConn {
	t.Helper()
	ctx := ctxT(t)
	u := &url.URL{Scheme: "https", Host: e.sim.HostPort(), Path: vim25.Path}
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, e.sim.Thumbprint())
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	sm := session.NewManager(vc)
	if err := sm.Login(ctx, url.UserPassword(e.sim.Username(), e.sim.Password())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.Logout(context.Background()) })
	return &adminConn{vim: vc, sm: sm, pc: property.DefaultCollector(vc)}
}
