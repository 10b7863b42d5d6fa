package vcenter

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

const gib = 1 << 30

func TestNodeVMsAndDatastoresFromCache(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	for _, n := range e.sim.NodeVMs() {
		mark := e.n.Count()
		vm, err := e.c.NodeVM(ctx, n.UUID)
		if err != nil {
			t.Fatalf("NodeVM(%s): %v", n.UUID, err)
		}
		if vm.Name != n.Name || vm.UUID != n.UUID || vm.ID != n.Ref || vm.Host != n.Host {
			t.Errorf("NodeVM(%s) = %+v; want %+v", n.UUID, vm, n)
		}
		if got := e.n.Count() - mark; got != 0 {
			t.Errorf("NodeVM made %d HTTP requests; want 0", got)
		}
	}
	if _, err := e.c.NodeVM(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("NodeVM(unknown) = %v; want ErrNodeNotFound", err)
	}

	dss, err := e.c.Datastores(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, d := range e.sim.Datastores() {
		want[d.Ref] = true
	}
	if len(dss) != len(want) {
		t.Fatalf("Datastores: %d; sim has %d", len(dss), len(want))
	}
	for _, d := range dss {
		if !want[d.ID] || d.URL == "" || d.CapacityBytes == 0 {
			t.Errorf("datastore %+v", d)
		}
		if !d.Reachable && len(d.Unreachable) == 0 {
			t.Errorf("datastore %s unreachable with no VM named", d.Name)
		}
	}
	if err := e.c.Healthy(ctx); err != nil {
		t.Errorf("Healthy: %v", err)
	}
}

func TestReachabilityMatchesSim(t *testing.T) {
	e := newEnv(t, 3, nil)
	dss, err := e.c.Datastores(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	nodeHosts := map[string]string{}
	for _, n := range e.sim.NodeVMs() {
		nodeHosts[n.Name] = n.Host
	}
	byName := map[string]Datastore{}
	for _, d := range dss {
		byName[d.Name] = d
	}
	for _, sd := range e.sim.Datastores() {
		var unreachable []string
		for vm, host := range nodeHosts {
			if !slices.Contains(sd.Hosts, host) {
				unreachable = append(unreachable, vm)
			}
		}
		got := byName[sd.Name]
		if !slices.Equal(sortedCopy(got.Unreachable), sortedCopy(unreachable)) || got.Reachable != (len(unreachable) == 0) {
			t.Errorf("%s: reachable=%v unreachable=%v; want %v", sd.Name, got.Reachable, got.Unreachable, unreachable)
		}
	}
}

func TestGoldVolumesLandOnGoldDatastores(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	gold, err := e.c.PolicyByName(ctx, "Gold")
	if err != nil {
		t.Fatal(err)
	}
	goldURLs := map[string]bool{}
	for _, d := range e.sim.Datastores() {
		if slices.Contains(d.Policies, "Gold") {
			goldURLs[d.URL] = true
		}
	}
	if len(goldURLs) == 0 || len(goldURLs) == len(e.sim.Datastores()) {
		t.Fatalf("the sim should make Gold fit some datastores only: %v", goldURLs)
	}
	candidates := placeable(t, e.c, gold.ID)
	for i := range 20 {
		// Rotate the candidates so the volumes spread over them.
		k := i % len(candidates)
		order := append(append([]string(nil), candidates[k:]...), candidates[:k]...)
		vol, err := e.c.CreateVolume(ctx, CreateSpec{
			Name: fmt.Sprintf("pvc-gold-%02d", i), CapacityBytes: gib, PolicyID: gold.ID, DatastoreIDs: order,
			PVCName: fmt.Sprintf("data-%d", i), PVCNamespace: "default", PVName: fmt.Sprintf("pvc-gold-%02d", i),
		})
		if err != nil {
			t.Fatalf("CreateVolume %d: %v", i, err)
		}
		if !goldURLs[vol.DatastoreURL] {
			t.Errorf("volume %s landed on %s, not a Gold datastore", vol.ID, vol.DatastoreURL)
		}
		got, err := e.c.Volume(ctx, vol.ID)
		if err != nil {
			t.Fatalf("Volume(%s): %v", vol.ID, err)
		}
		if !goldURLs[got.DatastoreURL] || got.PolicyID != gold.ID || got.CapacityBytes != gib ||
			got.ClusterID != "test-cluster" || got.PVCName != fmt.Sprintf("data-%d", i) || got.PVCNamespace != "default" ||
			got.PVName != vol.Name || got.Name != vol.Name {
			t.Errorf("Volume(%s) = %+v", vol.ID, got)
		}
	}
}

func TestUnknownPolicyListsExisting(t *testing.T) {
	e := newEnv(t, 3, nil)
	_, err := e.c.PolicyByName(ctxT(t), "Platinum")
	if !errors.Is(err, ErrPolicyNotFound) {
		t.Fatalf("PolicyByName(Platinum) = %v; want ErrPolicyNotFound", err)
	}
	for _, want := range []string{`"Gold"`, `"Silver"`} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(err.Error()) {
			t.Errorf("error %q does not list %s", err, want)
		}
	}
	// A second miss within the interval costs no call.
	mark := e.n.Count()
	if _, err := e.c.PolicyByName(ctxT(t), "Platinum"); !errors.Is(err, ErrPolicyNotFound) {
		t.Fatal(err)
	}
	if got := e.n.Count() - mark; got != 0 {
		t.Errorf("second miss made %d requests; want 0", got)
	}
	pols, err := e.c.Policies(ctxT(t))
	if err != nil || len(pols) < 2 {
		t.Fatalf("Policies = %v, %v", pols, err)
	}
}

func TestInsufficientSpace(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	dss, err := e.c.Datastores(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	small, big := dss[0], dss[0]
	for _, d := range dss {
		if d.Reachable && d.FreeBytes < small.FreeBytes {
			small = d
		}
		if d.Reachable && d.FreeBytes > big.FreeBytes {
			big = d
		}
	}
	if small.FreeBytes == big.FreeBytes {
		t.Skip("all datastores have the same free space")
	}
	size := (small.FreeBytes/mib + 1) * mib // just over the small one's free space

	// Known from the cache: no call at all.
	mark := e.n.Count()
	_, err = e.c.CreateVolume(ctx, CreateSpec{Name: "too-big", CapacityBytes: size, DatastoreIDs: []string{small.ID}})
	if !errors.Is(err, ErrInsufficientSpace) {
		t.Fatalf("CreateVolume on %s = %v; want ErrInsufficientSpace", small.Name, err)
	}
	if got := e.n.Count() - mark; got != 0 {
		t.Errorf("refusal from the cache made %d requests", got)
	}

	// Skipped: lands on the next candidate.
	if size <= big.FreeBytes {
		vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "skips-small", CapacityBytes: size, DatastoreIDs: []string{small.ID, big.ID}})
		if err != nil {
			t.Fatalf("CreateVolume small,big: %v", err)
		}
		if vol.DatastoreURL != big.URL {
			t.Errorf("volume on %s; want %s", vol.DatastoreURL, big.URL)
		}
	}

	// vCenter refuses what the (here: deliberately stale) cache let through.
	inv := e.c.inv.Load()
	inv.mu.Lock()
	for _, d := range inv.datastores {
		if d.ref.Value == small.ID {
			d.free = 1 << 50
		}
	}
	inv.mu.Unlock()
	_, err = e.c.CreateVolume(ctx, CreateSpec{Name: "refused", CapacityBytes: size, DatastoreIDs: []string{small.ID}})
	if !errors.Is(err, ErrInsufficientSpace) {
		t.Fatalf("CreateVolume refused by vCenter = %v; want ErrInsufficientSpace", err)
	}
	t.Logf("refusal: %v", err)
	if _, err := e.c.FindVolumeByName(ctx, "refused"); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("a refused volume exists: %v", err)
	}
}

func TestAttachDetachDelete(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	nodes := e.sim.NodeVMs()
	vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-attach", CapacityBytes: gib, DatastoreIDs: placeable(t, e.c, "")})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := e.c.AttachVolume(ctx, vol.ID, "11111111-2222-3333-4444-555555555555"); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("attach to unknown node = %v; want ErrNodeNotFound", err)
	}
	disk, err := e.c.AttachVolume(ctx, vol.ID, nodes[0].UUID)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(disk) {
		t.Errorf("disk UUID %q is not 32 lowercase hex digits", disk)
	}

	mark := e.n.Count()
	again, err := e.c.AttachVolume(ctx, vol.ID, nodes[0].UUID)
	if err != nil || again != disk {
		t.Errorf("attach again = %q, %v; want %q", again, err, disk)
	}
	if got := e.n.Count() - mark; got != 0 {
		t.Errorf("attach again made %d requests; want 0", got)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, nodes[1].UUID); !errors.Is(err, ErrVolumeInUse) {
		t.Errorf("attach to another node = %v; want ErrVolumeInUse", err)
	}
	if err := e.c.DeleteVolume(ctx, vol.ID); !errors.Is(err, ErrVolumeInUse) {
		t.Errorf("delete attached = %v; want ErrVolumeInUse", err)
	}

	got, err := e.c.Volume(ctx, vol.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Attachments) != 1 || got.Attachments[0].NodeUUID != nodes[0].UUID ||
		got.Attachments[0].DiskUUID != disk || got.Attachments[0].VMName != nodes[0].Name {
		t.Errorf("attachments %+v; want %s on %s", got.Attachments, disk, nodes[0].Name)
	}

	// Detach: not attached there, unknown VM, and the real one; twice.
	for _, node := range []string{nodes[1].UUID, "11111111-2222-3333-4444-555555555555", nodes[0].UUID, nodes[0].UUID} {
		if err := e.c.DetachVolume(ctx, vol.ID, node); err != nil {
			t.Errorf("detach from %s: %v", node, err)
		}
	}
	if got, err := e.c.Volume(ctx, vol.ID); err != nil || len(got.Attachments) != 0 {
		t.Errorf("after detach: %+v, %v", got.Attachments, err)
	}

	// Reattach elsewhere works now, and the disk UUID is the volume's.
	disk2, err := e.c.AttachVolume(ctx, vol.ID, nodes[1].UUID)
	if err != nil {
		t.Fatalf("attach to node 1: %v", err)
	}
	t.Logf("disk UUID on node 0: %s, on node 1: %s", disk, disk2)
	if err := e.c.DetachVolume(ctx, vol.ID, nodes[1].UUID); err != nil {
		t.Fatal(err)
	}

	file, ok := e.sim.VolumeFile(vol.ID)
	if !ok {
		t.Fatal("the embedded vCenter has no data file for the volume")
	}
	freeBefore := freeOf(e.sim, vol.DatastoreURL)
	if err := e.c.DeleteVolume(ctx, vol.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// The disk goes with the record (CnsDeleteVolume with deleteDisk):
	// its file and its space.
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the volume's disk %s after delete: %v, want it gone", file, err)
	}
	if got := freeOf(e.sim, vol.DatastoreURL); got != freeBefore+gib {
		t.Errorf("datastore free space %d after deleting a 1 GiB volume, want %d", got, freeBefore+gib)
	}
	if err := e.c.DeleteVolume(ctx, vol.ID); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("delete again = %v; want ErrVolumeNotFound", err)
	}
	if _, err := e.c.Volume(ctx, vol.ID); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("Volume after delete = %v; want ErrVolumeNotFound", err)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, nodes[0].UUID); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("attach deleted = %v; want ErrVolumeNotFound", err)
	}
	if _, err := e.c.FindVolumeByName(ctx, "pvc-attach"); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("FindVolumeByName after delete = %v; want ErrVolumeNotFound", err)
	}
}

func TestListVolumesPagesEverythingOnce(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	want := map[string]bool{}
	for i := range 23 {
		vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: fmt.Sprintf("pvc-list-%02d", i), CapacityBytes: 64 * mib, DatastoreIDs: ds})
		if err != nil {
			t.Fatal(err)
		}
		want[vol.ID] = true
	}
	for _, limit := range []int64{1, 5, 23, 100} {
		seen := map[string]int{}
		offset, pages := int64(0), 0
		for {
			page, next, err := e.c.ListVolumes(ctx, offset, limit)
			if err != nil {
				t.Fatalf("ListVolumes(%d, %d): %v", offset, limit, err)
			}
			if int64(len(page)) > limit {
				t.Fatalf("page of %d > limit %d", len(page), limit)
			}
			for _, v := range page {
				seen[v.ID]++
			}
			pages++
			if next == 0 {
				break
			}
			if next <= offset || pages > 100 {
				t.Fatalf("next %d after offset %d", next, offset)
			}
			offset = next
		}
		for id := range want {
			if seen[id] != 1 {
				t.Errorf("limit %d: volume %s seen %d times", limit, id, seen[id])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("limit %d: %d volumes listed; want %d", limit, len(seen), len(want))
		}
	}
	all, next, err := e.c.ListVolumes(ctx, 0, 0)
	if err != nil || next != 0 || len(all) != len(want) {
		t.Errorf("ListVolumes(0, 0) = %d volumes, next %d, %v", len(all), next, err)
	}
}

func TestConcurrentCreatesShareOneWatch(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	const workers, each = 8, 4
	// The first create makes the client read the cluster's names once, in
	// the background (names.go): let that be done before counting.
	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-par-first", CapacityBytes: 16 * mib, DatastoreIDs: ds}); err != nil {
		t.Fatal(err)
	}
	waitNamesRead(t, e.c)
	mark := e.rec.mark()
	errs := make(chan error, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := e.c.CreateVolume(ctx, CreateSpec{Name: fmt.Sprintf("pvc-par-%d-%d", w, i), CapacityBytes: 16 * mib, DatastoreIDs: ds})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls := e.rec.since(mark)
	count := map[string]int{}
	for _, m := range calls {
		count[m]++
	}
	t.Logf("%d creates: %v", workers*each, count)
	for m := range count {
		switch m {
		case "CnsCreateVolume", "WaitForUpdatesEx":
		default:
			t.Errorf("unexpected call %s: tasks must be followed by the one watch", m)
		}
	}
	if e.rec.inFlight != 0 {
		t.Errorf("tasks in flight after all creates: %d", e.rec.inFlight)
	}
	all, _, err := e.c.ListVolumes(ctx, 0, 0)
	if err != nil || len(all) != workers*each+1 {
		t.Errorf("ListVolumes: %d volumes, %v; want %d", len(all), err, workers*each+1)
	}
}

func TestPolicyCacheTTL(t *testing.T) {
	const ttl = 700 * time.Millisecond
	e := newEnv(t, 3, func(o *Options) { o.PolicyTTL = ttl })
	ctx := ctxT(t)
	calls := func(f func()) []string {
		mark := e.rec.mark()
		f()
		var out []string
		for _, m := range e.rec.since(mark) {
			if m != "WaitForUpdatesEx" {
				out = append(out, m)
			}
		}
		return out
	}
	var gold Policy
	first := calls(func() {
		var err error
		if gold, err = e.c.PolicyByName(ctx, "Gold"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Datastores(ctx, gold.ID); err != nil {
			t.Fatal(err)
		}
	})
	if !slices.Equal(first, []string{"PbmQueryProfile", "PbmRetrieveContent", "PbmCheckRequirements"}) {
		t.Errorf("cold calls %v", first)
	}
	warm := calls(func() {
		for range 10 {
			if _, err := e.c.PolicyByName(ctx, "Silver"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.c.Datastores(ctx, gold.ID); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(warm) != 0 {
		t.Errorf("warm calls %v; want none", warm)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if n := len(calls(func() {})); n != 0 {
		t.Errorf("%d calls while idle: the caches must not refresh in the background", n)
	}
	expired := calls(func() {
		if _, err := e.c.Datastores(ctx, gold.ID); err != nil {
			t.Fatal(err)
		}
	})
	if !slices.Equal(expired, []string{"PbmCheckRequirements"}) {
		t.Errorf("after the TTL: %v", expired)
	}
}

// freeOf is a datastore's free space as the embedded vCenter models it.
func freeOf(s *sim.Sim, url string) int64 {
	for _, d := range s.Datastores() {
		if d.URL == url {
			return d.FreeBytes
		}
	}
	return -1
}
