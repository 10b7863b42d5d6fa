package driver_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/rtcount"
)

// Each failure here is made to happen in the embedded vCenter (latency,
// injected faults, a restart); nothing of the driver is mocked.

// controller is one controller process: its own vCenter client (session,
// watch, task waiter) and driver, on a shared embedded vCenter.
type controller struct {
	d     *driver.Driver
	vc    vcenter.Client
	calls *rtcount.Counter
}

func newController(t *testing.T, s *sim.Sim) *controller {
	t.Helper()
	c := &controller{calls: &rtcount.Counter{}}
	var err error
	c.vc, err = vcenter.New(context.Background(), vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
		Thumbprint: s.Thumbprint(), ClusterID: "test-cluster",
		WrapTransport: c.calls.Wrap,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.vc.Close(context.Background()) })
	if c.d, err = driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "test"}, c.vc, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

// volumesNamed counts the CNS volumes of the cluster with that name,
// asking vCenter through a client of its own.
func volumesNamed(t *testing.T, d *driver.Driver, name string) int {
	t.Helper()
	n := 0
	for _, id := range allVolumeIDs(t, d) {
		if id.name == name {
			n++
		}
	}
	return n
}

type named struct{ id, name string }

func allVolumeIDs(t *testing.T, d *driver.Driver) []named {
	t.Helper()
	resp, err := d.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []named
	for _, e := range resp.GetEntries() {
		out = append(out, named{id: e.GetVolume().GetVolumeId(), name: e.GetVolume().GetVolumeContext()["name"]})
	}
	return out
}

// retryLike calls op as a sidecar does: again after Aborted, Unavailable,
// DeadlineExceeded or Canceled (each try with timeout), until it succeeds
// or fails otherwise.
func retryLike[T any](t *testing.T, timeout time.Duration, op func(context.Context) (T, error)) (T, error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		v, err := op(ctx)
		cancel()
		switch status.Code(err) {
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			if time.Now().After(deadline) {
				t.Fatalf("still failing after 3 minutes: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return v, err
	}
}

// TestLostReplyOfCreateMakesOneVolume (issue 11, findings 1 and 9): the
// answer to CnsCreateVolume is lost after vCenter started the task; the
// driver must neither resend it nor create again, but find the volume the
// lost call made.
func TestLostReplyOfCreateMakesOneVolume(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": time.Second}}})
	c := newController(t, s)
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsCreateVolume", Fault: sim.FaultLostReply, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := retryLike(t, time.Minute, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
		return c.d.CreateVolume(ctx, createReq("pvc-lost-reply", gib, gold))
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countVolumes(t, c.d); n != 1 {
		t.Fatalf("%d volumes after a lost reply, want 1 (%s)", n, resp.GetVolume().GetVolumeId())
	}
	if got := s.FaultStats()["CnsCreateVolume LostReply"]; got != 1 {
		t.Errorf("the fault did not happen: %v", s.FaultStats())
	}
}

// TestSecondControllerWaitsForTheFirstOnesTask (finding 1): a create
// whose task outlasts its controller (a leader change, a restart) and the
// retry on another controller make one volume, and the retry returns it.
func TestSecondControllerWaitsForTheFirstOnesTask(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 6 * time.Second}}})
	first, second := newController(t, s), newController(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := first.d.CreateVolume(ctx, createReq("pvc-leader-change", gib, gold)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("first controller: %v, want its caller's deadline", err)
	}
	// The first controller dies; its task runs on in vCenter. The other
	// controller's provisioner takes over after the leader lease ran out
	// (at least lease duration - renew deadline = 5 s with the sidecars'
	// defaults): well after its watch has seen the running task.
	_ = first.vc.Close(context.Background())
	time.Sleep(2500 * time.Millisecond)
	resp, err := retryLike(t, time.Minute, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
		return second.d.CreateVolume(ctx, createReq("pvc-leader-change", gib, gold))
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countVolumes(t, second.d); n != 1 {
		t.Fatalf("%d volumes, want 1 (second controller returned %s)", n, resp.GetVolume().GetVolumeId())
	}
}

// TestRetriedSnapshotMakesOne (finding 2): a CreateSnapshot whose caller
// gives up before the CNS task ends, retried, makes one snapshot.
func TestRetriedSnapshotMakesOne(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	c := newController(t, s)
	vol, err := c.d.CreateVolume(context.Background(), createReq("pvc-snapped", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	s.SetLatency(sim.Latency{Methods: map[string]time.Duration{"CnsCreateSnapshots": 2 * time.Second}})
	req := &csi.CreateSnapshotRequest{Name: "snap-retried", SourceVolumeId: vol.GetVolume().GetVolumeId()}
	tries := 0
	snap, err := retryLike(t, 300*time.Millisecond, func(ctx context.Context) (*csi.CreateSnapshotResponse, error) {
		tries++
		return c.d.CreateSnapshot(ctx, req)
	})
	if err != nil {
		t.Fatal(err)
	}
	if tries < 2 {
		t.Errorf("the first try succeeded: the caller's timeout did not bite")
	}
	list, err := c.d.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{SourceVolumeId: vol.GetVolume().GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetEntries()); n != 1 {
		t.Fatalf("%d snapshots after a retried CreateSnapshot, want 1 (%s)", n, snap.GetSnapshot().GetSnapshotId())
	}
}

// TestUnpublishWaitsForTheAttach (finding 3): a publish that times out
// while its attach goes on, then an unpublish: in the end the disk is on
// no VM, and it can be published to another node.
func TestUnpublishWaitsForTheAttach(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2})
	c := newController(t, s)
	vol, err := c.d.CreateVolume(context.Background(), createReq("pvc-dangling", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	n1, n2 := s.NodeVMs()[0], s.NodeVMs()[1]
	s.SetLatency(sim.Latency{Methods: map[string]time.Duration{"CnsAttachVolume": 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.d.ControllerPublishVolume(ctx, publishReq(id, n1.UUID)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("publish: %v, want its caller's deadline", err)
	}
	if _, err := retryLike(t, time.Minute, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
		return c.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: n1.UUID})
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.d.ControllerGetVolume(context.Background(), &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if nodes := got.GetStatus().GetPublishedNodeIds(); len(nodes) != 0 {
		t.Fatalf("after unpublish the volume is still attached to %v", nodes)
	}
	s.SetLatency(sim.Latency{})
	if _, err := c.d.ControllerPublishVolume(context.Background(), publishReq(id, n2.UUID)); err != nil {
		t.Fatalf("publish to the other node: %v", err)
	}
}

// TestDeleteDoesNotBelieveNotFound (finding 4): a delete whose task fails
// with a "not found" of something else than the volume does not answer
// "already gone"; the volume stays and a later delete removes it.
func TestDeleteDoesNotBelieveNotFound(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	c := newController(t, s)
	vol, err := c.d.CreateVolume(context.Background(), createReq("pvc-not-gone", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsDeleteVolume", Fault: sim.FaultManagedObjectNotFound, InTask: true, Times: 1,
		Message: "The object 'vim.Datastore:datastore-17' has already been deleted or has not been completely created"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err == nil {
		t.Fatal("DeleteVolume answered success while the volume is still there")
	}
	if n := countVolumes(t, c.d); n != 1 {
		t.Fatalf("%d volumes, want the one not deleted", n)
	}
	if _, err := c.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if n := countVolumes(t, c.d); n != 0 {
		t.Fatalf("%d volumes after the delete", n)
	}
}

// TestVCenterRestartMidCreate (findings 0 and 6): vCenter restarts while a
// CnsCreateVolume task runs; the same controller carries on without a
// restart of its own, and the claim gets exactly one volume, whether the
// lost task's operation happened or not.
func TestVCenterRestartMidCreate(t *testing.T) {
	simtest.SkipShort(t, "starts the embedded vCenter")
	for _, tc := range []struct {
		fate sim.TaskFate
		down time.Duration
	}{{sim.TasksAbandoned, 60 * time.Second}, {sim.TasksComplete, 3 * time.Second}} {
		fate := tc.fate
		r, err := sim.NewRunner(context.Background(), sim.Options{Dir: filepath.Join(t.TempDir(), "vc"), NodeVMs: 1,
			Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 2 * time.Second}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		c := newController(t, r.Sim())
		done := make(chan error, 1)
		go func() {
			_, err := retryLike(t, time.Minute, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
				return c.d.CreateVolume(ctx, createReq("pvc-restart", gib, gold))
			})
			done <- err
		}()
		time.Sleep(700 * time.Millisecond) // the task is running
		if err := r.Restart(context.Background(), tc.down, fate); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("fate %d: %v", fate, err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("fate %d: CreateVolume did not end 2 minutes after vCenter came back", fate)
		}
		t.Logf("vCenter down %v, running tasks' fate %d: the create ended %v after vCenter came back", tc.down, fate, time.Since(start).Round(10*time.Millisecond))
		if n := countVolumes(t, c.d); n != 1 {
			t.Fatalf("fate %d: %d volumes, want 1", fate, n)
		}
	}
}

// TestFlakyVCenterKeepsEveryPromise (finding 0 and the first test):
// a fifth of all vCenter calls fail (lost requests, lost replies, CNS busy)
// over more than 200 CSI operations by clients that retry as the sidecars
// do: nothing lost, duplicated, leaked or left attached, and no call hangs
// until its caller gives up.
func TestFlakyVCenterKeepsEveryPromise(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 3})
	c := newController(t, s)
	for _, r := range []sim.FaultRule{
		{Method: "*", Fault: sim.FaultReset, Probability: 0.07},
		{Method: "*", Fault: sim.FaultLostReply, Probability: 0.07},
		{Method: "Cns*", Fault: sim.FaultCnsBusy, Probability: 0.06},
	} {
		if _, err := s.InjectFault(r); err != nil {
			t.Fatal(err)
		}
	}
	const workers, perWorker = 6, 6
	nodes := s.NodeVMs()
	start := time.Now()
	var ops, stuck atomic.Int64
	type made struct{ name, id string }
	results := make(chan made, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				name := fmt.Sprintf("pvc-flaky-%d-%d", w, i)
				node := nodes[(w+i)%len(nodes)].UUID
				id := flakyCycle(t, c.d, name, node, &ops, &stuck)
				results <- made{name, id}
			}
		})
	}
	wg.Wait()
	close(results)
	took := time.Since(start)
	s.ClearFaults()

	ids := map[string]string{}
	for r := range results {
		if other, dup := ids[r.id]; dup {
			t.Errorf("volume %s served both %s and %s", r.id, other, r.name)
		}
		ids[r.id] = r.name
	}
	left := s.Volumes()
	for _, v := range left {
		t.Errorf("volume %s (%s) left behind (attached to %q)", v.ID, v.Name, v.VM)
	}
	if n := s.SnapshotCount(); n != 0 {
		t.Errorf("%d snapshots left behind", n)
	}
	stats := s.FaultStats()
	injected := 0
	for _, n := range stats {
		injected += n
	}
	t.Logf("%d CSI operations on %d volumes in %v with %d vCenter faults injected (%s); %d volumes left, %d duplicated, %d calls hung until the caller's 45 s deadline",
		ops.Load(), len(ids), took.Round(time.Second), injected, summarize(stats), len(left), workers*perWorker-len(ids), stuck.Load())
	if stuck.Load() != 0 {
		t.Errorf("%d calls hung until their caller gave up", stuck.Load())
	}
	if ops.Load() < 200 {
		t.Errorf("only %d operations", ops.Load())
	}
	if injected < int(ops.Load())/4 {
		t.Errorf("only %d faults for %d operations", injected, ops.Load())
	}
}

// flakyCycle runs one volume's life: create, publish, expand, snapshot,
// delete the snapshot, unpublish, delete; each step retried as a sidecar
// retries. It returns the volume's ID.
func flakyCycle(t *testing.T, d *driver.Driver, name, node string, ops, stuck *atomic.Int64) string {
	const try = 45 * time.Second
	step := func(what string, op func(ctx context.Context) error) {
		ops.Add(1)
		if _, err := retryLike(t, try, func(ctx context.Context) (struct{}, error) {
			err := op(ctx)
			if status.Code(err) == codes.DeadlineExceeded {
				stuck.Add(1) // a call that hung until its caller gave up
				t.Logf("%s %s hung until its caller gave up after %v", what, name, try)
			}
			return struct{}{}, err
		}); err != nil {
			t.Errorf("%s %s: %v", what, name, err)
		}
	}
	var id string
	step("create", func(ctx context.Context) error {
		resp, err := d.CreateVolume(ctx, createReq(name, gib, gold))
		if err == nil {
			if id != "" && id != resp.GetVolume().GetVolumeId() {
				t.Errorf("%s: a retried create returned %s, an earlier one %s", name, resp.GetVolume().GetVolumeId(), id)
			}
			id = resp.GetVolume().GetVolumeId()
		}
		return err
	})
	if id == "" {
		return ""
	}
	step("publish", func(ctx context.Context) error {
		_, err := d.ControllerPublishVolume(ctx, publishReq(id, node))
		return err
	})
	step("expand", func(ctx context.Context) error {
		_, err := d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id,
			CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}, VolumeCapability: mountRWO()[0]})
		return err
	})
	var snap string
	step("snapshot", func(ctx context.Context) error {
		resp, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-" + name, SourceVolumeId: id})
		if err == nil {
			snap = resp.GetSnapshot().GetSnapshotId()
		}
		return err
	})
	step("delete snapshot", func(ctx context.Context) error {
		_, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap})
		return err
	})
	step("unpublish", func(ctx context.Context) error {
		_, err := d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node})
		return err
	})
	step("delete", func(ctx context.Context) error {
		_, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		return err
	})
	return id
}

func summarize(stats map[string]int) string {
	byFault := map[string]int{}
	for k, n := range stats {
		byFault[k[strings.LastIndex(k, " ")+1:]] += n
	}
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(byFault)) {
		parts = append(parts, fmt.Sprintf("%s %d", f, byFault[f]))
	}
	return strings.Join(parts, ", ")
}

// TestLivenessIndependentOfVCenter (finding 7): with vCenter gone, Probe
// still says ready (the livenessprobe sidecar must not restart the
// controller and kill what it carries on); readiness says why not.
func TestLivenessIndependentOfVCenter(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	c := newController(t, s)
	s.Outage(time.Hour)
	defer s.Outage(0)
	deadline := time.Now().Add(30 * time.Second)
	for c.d.Ready(context.Background()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("readiness still fine 30 s into the outage")
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := c.d.Probe(context.Background(), &csi.ProbeRequest{})
	if err != nil || !resp.GetReady().GetValue() {
		t.Fatalf("Probe during a vCenter outage: %v %v, want ready", resp, err)
	}
	s.Outage(0)
	for c.d.Ready(context.Background()) != nil {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatal("not ready again 30 s after vCenter came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImpatientProvisioner (finding 1): a provisioner-like client with a
// 1 s timeout against 5 s CNS tasks, several claims at once: one volume
// per name, whatever the number of retries.
func TestImpatientProvisioner(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 5 * time.Second}}})
	c := newController(t, s)
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Go(func() {
			resp, err := retryLike(t, time.Second, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
				return c.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-impatient-%d", i), gib, gold))
			})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = resp.GetVolume().GetVolumeId()
		})
	}
	wg.Wait()
	byName := map[string]int{}
	for _, v := range s.Volumes() {
		byName[v.Name]++
	}
	for i, id := range ids {
		name := fmt.Sprintf("pvc-impatient-%d", i)
		if byName[name] != 1 || id == "" {
			t.Errorf("%s: %d volumes (returned %q), want 1", name, byName[name], id)
		}
	}
}

// TestNodeVMGoneWithVolumes (issue 11: "a node VM deleted or powered off
// with volumes attached lets them be unpublished and published elsewhere").
func TestNodeVMGoneWithVolumes(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 3})
	c := newController(t, s)
	ctx := context.Background()
	vms := s.NodeVMs()
	for i, gone := range []func() error{
		func() error { return s.PowerOffVM(ctx, vms[0].Name) },
		func() error { return s.DeleteVM(ctx, vms[1].Name) },
	} {
		vol, err := c.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-on-a-lost-node-%d", i), gib, gold))
		if err != nil {
			t.Fatal(err)
		}
		id, from := vol.GetVolume().GetVolumeId(), vms[i].UUID
		if _, err := c.d.ControllerPublishVolume(ctx, publishReq(id, from)); err != nil {
			t.Fatal(err)
		}
		if err := gone(); err != nil {
			t.Fatal(err)
		}
		if _, err := retryLike(t, 30*time.Second, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
			return c.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: from})
		}); err != nil {
			t.Fatalf("unpublish from %s: %v", vms[i].Name, err)
		}
		if _, err := retryLike(t, 30*time.Second, func(ctx context.Context) (*csi.ControllerPublishVolumeResponse, error) {
			return c.d.ControllerPublishVolume(ctx, publishReq(id, vms[2].UUID))
		}); err != nil {
			t.Fatalf("publish elsewhere after %s went: %v", vms[i].Name, err)
		}
		for _, v := range s.Volumes() {
			if v.ID == id && v.VM != vms[2].Name {
				t.Errorf("volume %s is on %q, want %s", id, v.VM, vms[2].Name)
			}
		}
	}
}

// TestVCenterFaultCodes: faults vCenter answers get the code that tells the
// caller what to do. A missing privilege is PermissionDenied naming the
// privilege and the object (retrying does not help; the admin grants it);
// a state that passes (InvalidState: a host not connected, a VM in
// migration) is transient: retried with backoff, and the create succeeds.
func TestVCenterFaultCodes(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	c := newController(t, s)
	ctx := context.Background()
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsCreateVolume", Fault: sim.FaultNoPermission, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.d.CreateVolume(ctx, createReq("pvc-denied", 1<<30, gold))
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "needs privilege Cns.Searchable on") {
		t.Errorf("CreateVolume refused for a privilege: %v; want PermissionDenied naming the privilege", err)
	}
	if _, err := c.d.CreateVolume(ctx, createReq("pvc-denied", 1<<30, gold)); err != nil {
		t.Errorf("CreateVolume once granted: %v", err)
	}
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsCreateVolume", Fault: sim.FaultInvalidState, Times: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.d.CreateVolume(ctx, createReq("pvc-state", 1<<30, gold)); err != nil {
		t.Errorf("CreateVolume through two InvalidState answers: %v; want it retried", err)
	}
	if n := s.FaultStats()["CnsCreateVolume InvalidState"]; n != 2 {
		t.Errorf("InvalidState injected %d times, want 2 (stats %v)", n, s.FaultStats())
	}
	// A host disconnected for a moment, a call vCenter timed out: retried.
	for _, f := range []string{sim.FaultHostNotConnected, sim.FaultTimedout} {
		if _, err := s.InjectFault(sim.FaultRule{Method: "CnsCreateVolume", Fault: f, Times: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.d.CreateVolume(ctx, createReq("pvc-"+strings.ToLower(f), 1<<30, gold)); err != nil {
			t.Errorf("CreateVolume through %s: %v; want it retried", f, err)
		}
		if n := s.FaultStats()["CnsCreateVolume "+f]; n != 1 {
			t.Errorf("%s injected %d times, want 1", f, n)
		}
	}
	// A vCenter without a method the call needs: FailedPrecondition naming
	// the method and the release that has it, not Internal retried forever.
	vol, err := c.d.CreateVolume(ctx, createReq("pvc-grow", 1<<30, gold))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsExtendVolume", Fault: sim.FaultMethodNotFound, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(),
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "no CnsExtendVolume: it comes with vSphere 7.0") {
		t.Errorf("expand on a vCenter without CnsExtendVolume: %v; want FailedPrecondition naming the method and release", err)
	}
}

// TestOlderVCenterRelease: a vCenter 7.0 Update 2 has no CNS snapshots.
// The controller does not offer snapshots or clones there (csi-snapshotter
// and the provisioner then never ask), and a snapshot asked for anyway is
// FailedPrecondition naming the release that has them; volumes work.
func TestOlderVCenterRelease(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Release: "7.0.2"})
	c := newController(t, s)
	ctx := context.Background()
	if got := c.vc.About().Version; got != "7.0.2" {
		t.Fatalf("vCenter says it is %q, want 7.0.2", got)
	}
	caps, err := c.d.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	offered := map[csi.ControllerServiceCapability_RPC_Type]bool{}
	for _, cp := range caps.GetCapabilities() {
		offered[cp.GetRpc().GetType()] = true
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS, csi.ControllerServiceCapability_RPC_CLONE_VOLUME} {
		if offered[want] {
			t.Errorf("%s offered by a controller on vCenter 7.0.2", want)
		}
	}
	if !offered[csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME] || !offered[csi.ControllerServiceCapability_RPC_EXPAND_VOLUME] {
		t.Errorf("volume capabilities missing: %v", caps.GetCapabilities())
	}
	vol, err := c.d.CreateVolume(ctx, createReq("pvc-old-vc", 1<<30, gold))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-old-vc", SourceVolumeId: vol.GetVolume().GetVolumeId()})
	if st, _ := status.FromError(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "vSphere 7.0 Update 3") {
		t.Errorf("CreateSnapshot on vCenter 7.0.2: %v; want FailedPrecondition naming vSphere 7.0 Update 3", err)
	}

	// The default embedded vCenter is a current release and offers them.
	s2 := simtest.Start(t, sim.Options{NodeVMs: 1})
	c2 := newController(t, s2)
	caps, err = c2.d.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(caps.GetCapabilities()) != len(driver.ControllerCapabilities) {
		t.Errorf("vCenter %s: %d capabilities offered, want all %d", c2.vc.About(), len(caps.GetCapabilities()), len(driver.ControllerCapabilities))
	}
}
