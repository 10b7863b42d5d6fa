package vcenter

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestLookUpsArrivingTogetherShareOneQuery: eight creates' look-ups by
// name at once cost one CnsQueryVolume, and each gets its own answer.
func TestLookUpsArrivingTogetherShareOneQuery(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	made, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-look-3", CapacityBytes: 16 * mib, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	e.settle(300 * time.Millisecond)
	mark := e.rec.mark()
	var wg sync.WaitGroup
	found := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			v, err := e.c.FindVolumeByName(ctx, fmt.Sprintf("pvc-look-%d", i))
			if err == nil && v.ID != made.ID {
				err = fmt.Errorf("found %s, want %s", v.ID, made.ID)
			}
			found[i] = err
		})
	}
	wg.Wait()
	for i, err := range found {
		switch {
		case i == 3 && err != nil:
			t.Errorf("pvc-look-3: %v", err)
		case i != 3 && !errors.Is(err, ErrVolumeNotFound):
			t.Errorf("pvc-look-%d: %v, want not found", i, err)
		}
	}
	queries := 0
	for _, c := range e.rec.since(mark) {
		if c == "CnsQueryVolume" {
			queries++
		}
	}
	if queries != 1 {
		t.Errorf("%d CnsQueryVolume for 8 look-ups at once, want 1", queries)
	}
}
