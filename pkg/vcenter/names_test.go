package vcenter

import (
	"errors"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// TestNamesKnownWithoutAsking: once the cluster's names are read and the
// watch is up to date, a look-up of a free name costs no call; a name
// another controller of the cluster made since is found (its task told of
// it), and so is one this client made.
func TestNamesKnownWithoutAsking(t *testing.T) {
	e := newEnv(t, 1, nil)
	other := connectEnv(t, e.sim, nil) // another controller of the cluster
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-mine", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.FindVolumeByName(ctx, "pvc-first-look"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("first look-up: %v", err)
	}
	waitNamesRead(t, e.c)
	queries := func(mark int) int {
		n := 0
		for _, c := range e.rec.since(mark) {
			if c == "CnsQueryVolume" {
				n++
			}
		}
		return n
	}
	e.fresh(t)
	mark := e.rec.mark()
	if _, err := e.c.FindVolumeByName(ctx, "pvc-free"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("a free name: %v", err)
	}
	if n := queries(mark); n != 0 {
		t.Errorf("a free name's look-up made %d CnsQueryVolume, want none", n)
	}
	if v, err := e.c.FindVolumeByName(ctx, "pvc-mine"); err != nil || v.Name != "pvc-mine" {
		t.Errorf("the client's own volume: %+v, %v", v, err)
	}

	made, err := other.c.CreateVolume(ctx, CreateSpec{Name: "pvc-by-the-other", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	e.fresh(t)
	if v, err := e.c.FindVolumeByName(ctx, "pvc-by-the-other"); err != nil || v.ID != made.ID {
		t.Errorf("a volume another controller of the cluster made: %+v, %v; want %s", v, err, made.ID)
	}

	// The watch starts again (its connection reset): it may have missed a
	// task, so a look-up asks vCenter until the names are read again.
	_ = other.c.Close(ctx)
	gen := e.c.tasks.generation()
	if _, err := e.sim.InjectFault(sim.FaultRule{Method: "WaitForUpdatesEx", Fault: sim.FaultReset, Times: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-wakes-the-watch", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch started again", func() bool { return e.c.tasks.generation() != gen })
	e.fresh(t)
	mark = e.rec.mark()
	if _, err := e.c.FindVolumeByName(ctx, "pvc-free-2"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("a free name after the watch restarted: %v", err)
	}
	if n := queries(mark); n != 1 {
		t.Errorf("a look-up after the watch restarted made %d CnsQueryVolume, want 1 (the names may be stale)", n)
	}
}

// fresh waits until the watch is up to date: waiting in its long poll for
// watchFresh.
// waitNamesRead waits for the client's one read of the cluster's names.
func waitNamesRead(t testing.TB, c *client) {
	eventually(t, "the names read", func() bool {
		c.names.mu.Lock()
		defer c.names.mu.Unlock()
		return c.names.ready
	})
}

func (e *testEnv) fresh(t testing.TB) {
	t.Helper()
	eventually(t, "the watch up to date", func() bool {
		since := e.c.pollingSince.Load()
		return since != 0 && time.Since(time.Unix(0, since)) >= watchFresh
	})
}

// TestLookupReadsTasksWhenTheWatchIsBehind: with the cluster's names known
// but the watch not up to date (here: stopped), a look-up reads vCenter's
// recent tasks instead of querying CNS: a free name is answered without a
// CnsQueryVolume, and a name another controller has just used is not
// taken for free (its task is among the recent ones).
func TestLookupReadsTasksWhenTheWatchIsBehind(t *testing.T) {
	e := newEnv(t, 1, nil)
	other := connectEnv(t, e.sim, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-mine", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	waitNamesRead(t, e.c)
	e.c.cancel() // the watch stops: it hears nothing more, and is not up to date
	eventually(t, "the watch stopped", func() bool { return e.c.pollingSince.Load() == 0 })
	made, err := other.c.CreateVolume(ctx, CreateSpec{Name: "pvc-behind", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	count := func(mark int, method string) int {
		n := 0
		for _, c := range e.rec.since(mark) {
			if c == method {
				n++
			}
		}
		return n
	}
	mark := e.rec.mark()
	if _, err := e.c.FindVolumeByName(ctx, "pvc-free-behind"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("a free name: %v", err)
	}
	if q, r := count(mark, "CnsQueryVolume"), count(mark, "RetrievePropertiesEx")+count(mark, "RetrieveProperties"); q != 0 || r != 1 {
		t.Errorf("a free name with the watch behind: %d CnsQueryVolume, %d property reads; want 0 and 1", q, r)
	}
	if v, err := e.c.FindVolumeByName(ctx, "pvc-behind"); err != nil || v.ID != made.ID {
		t.Errorf("the name another controller has just used: %+v, %v; want %s", v, err, made.ID)
	}
}
