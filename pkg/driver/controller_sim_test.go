package driver_test

import (
	"context"
	"fmt"
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

type env struct {
	sim   *sim.Sim
	d     *driver.Driver
	calls *rtcount.Counter
}

// newEnv starts the embedded vCenter (without the node side) and a
// controller talking to it over SOAP.
func newEnv(t *testing.T, nodeVMs int) *env {
	t.Helper()
	return newEnvWith(t, sim.Options{NodeVMs: nodeVMs})
}

// newEnvWith starts the embedded vCenter with opts (in a test directory)
// and a controller talking to it over SOAP, counting its round trips.
func newEnvWith(t *testing.T, opts sim.Options) *env {
	t.Helper()
	ctx := context.Background()
	s := simtest.Start(t, opts)
	e := &env{sim: s, calls: &rtcount.Counter{}}
	vc, err := vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: sim.DefaultUsername, Password: sim.DefaultPassword,
		Thumbprint: s.Thumbprint(), ClusterID: "test-cluster",
		WrapTransport: e.calls.Wrap,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close(context.Background()) })
	if e.d, err = driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "test"}, vc, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func mountRWO() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
}

func createReq(name string, size int64, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: mountRWO(), Parameters: params,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size},
	}
}

var gold = map[string]string{"storagepolicyname": "Gold"}

const gib = int64(1) << 30

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("got %v; want %s containing %q", err, code, contains)
	}
}

func (e *env) datastoreByURL(t *testing.T, url string) sim.DatastoreInfo {
	t.Helper()
	for _, ds := range e.sim.Datastores() {
		if ds.URL == url {
			return ds
		}
	}
	t.Fatalf("volume on unknown datastore %s", url)
	return sim.DatastoreInfo{}
}

func TestGoldVolumesLandOnGoldDatastores(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	seen := map[string]bool{}
	for i := range 20 {
		resp, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-gold-%d", i), 5*gib, gold))
		if err != nil {
			t.Fatal(err)
		}
		ds := e.datastoreByURL(t, resp.GetVolume().GetVolumeContext()["datastoreurl"])
		if !slices.Contains(ds.Policies, "Gold") {
			t.Fatalf("volume %d on %s, which is not Gold-compatible (policies %v)", i, ds.Name, ds.Policies)
		}
		if len(ds.Hosts) < 3 {
			t.Fatalf("volume %d on %s, mounted on %v only", i, ds.Name, ds.Hosts)
		}
		seen[ds.Name] = true
		if resp.GetVolume().GetCapacityBytes() != 5*gib {
			t.Fatalf("capacity %d", resp.GetVolume().GetCapacityBytes())
		}
	}
	t.Logf("Gold volumes spread over %v", seen)
}

func TestCreateVolumeErrors(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	_, err := e.d.CreateVolume(ctx, createReq("a", gib, map[string]string{"storagepolicyname": "Platinum"}))
	wantCode(t, err, codes.InvalidArgument, "Gold")
	_, err = e.d.CreateVolume(ctx, createReq("b", gib, map[string]string{"storagepolicyname": "Gold", "diskformat": "thin"}))
	wantCode(t, err, codes.InvalidArgument, "storagepolicyname, datastoreurl, fstype")
	rwxBlock := createReq("c", gib, gold)
	rwxBlock.VolumeCapabilities[0] = &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}
	_, err = e.d.CreateVolume(ctx, rwxBlock)
	wantCode(t, err, codes.InvalidArgument, "raw block")

	var notGold, local sim.DatastoreInfo
	for _, ds := range e.sim.Datastores() {
		switch {
		case len(ds.Hosts) < 3:
			local = ds
		case !slices.Contains(ds.Policies, "Gold"):
			notGold = ds
		}
	}
	_, err = e.d.CreateVolume(ctx, createReq("d", gib, map[string]string{"storagepolicyname": "Gold", "datastoreurl": notGold.URL}))
	wantCode(t, err, codes.InvalidArgument, "not compatible with storage policy")
	_, err = e.d.CreateVolume(ctx, createReq("e", gib, map[string]string{"datastoreurl": local.URL}))
	wantCode(t, err, codes.InvalidArgument, "not reachable from every node VM")
	_, err = e.d.CreateVolume(ctx, createReq("f", 10000*gib, gold))
	wantCode(t, err, codes.OutOfRange, "larger than any datastore")
}

func TestFullDatastoreIsSkippedThenExhausted(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	var goldDS []sim.DatastoreInfo
	for _, ds := range e.sim.Datastores() {
		if slices.Contains(ds.Policies, "Gold") && len(ds.Hosts) >= 3 {
			goldDS = append(goldDS, ds)
		}
	}
	// Fill every Gold datastore but the smallest, then the smallest: each
	// volume goes where there is room, and then nothing fits.
	slices.SortFunc(goldDS, func(a, b sim.DatastoreInfo) int { return int(b.FreeBytes/gib - a.FreeBytes/gib) })
	for i, ds := range goldDS {
		resp, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("filler-%d", i), ds.FreeBytes, gold))
		if err != nil {
			t.Fatalf("filling %s: %v", ds.Name, err)
		}
		if got := resp.GetVolume().GetVolumeContext()["datastoreurl"]; got != ds.URL {
			t.Fatalf("filler %d landed on %s, want %s (the one with room)", i, got, ds.URL)
		}
	}
	_, err := e.d.CreateVolume(ctx, createReq("one-more", gib, gold))
	wantCode(t, err, codes.ResourceExhausted, `"Gold"`)
}

func TestCreateVolumeIdempotent(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	a, err := e.d.CreateVolume(ctx, createReq("pvc-1", 5*gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.d.CreateVolume(ctx, createReq("pvc-1", 5*gib, gold))
	if err != nil || b.GetVolume().GetVolumeId() != a.GetVolume().GetVolumeId() {
		t.Fatalf("second create: %v, %v; want the same volume %s", b, err, a.GetVolume().GetVolumeId())
	}
	_, err = e.d.CreateVolume(ctx, createReq("pvc-1", 8*gib, gold))
	wantCode(t, err, codes.AlreadyExists, "pvc-1")
}

func countVolumes(t *testing.T, d *driver.Driver) int {
	t.Helper()
	resp, err := d.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetEntries())
}

func TestConcurrentCreatesOfOneNameMakeOneVolume(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make([]string, 16)
	var aborted atomic.Int64
	for i := range ids {
		wg.Go(func() {
			for {
				resp, err := e.d.CreateVolume(ctx, createReq("pvc-race", gib, gold))
				if status.Code(err) == codes.Aborted {
					aborted.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = resp.GetVolume().GetVolumeId()
				return
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("different volumes for one name: %v", ids)
		}
	}
	if n := countVolumes(t, e.d); n != 1 {
		t.Fatalf("%d volumes, want 1", n)
	}
	if aborted.Load() == 0 {
		t.Log("no request was Aborted: the creates did not overlap this time")
	}
}

func TestCreateWhoseCallerGaveUpCompletes(t *testing.T) {
	e := newEnv(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the caller is gone before the volume can be made
	_, err := e.d.CreateVolume(ctx, createReq("pvc-impatient", gib, gold))
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want Canceled", err)
	}
	var resp *csi.CreateVolumeResponse
	for {
		resp, err = e.d.CreateVolume(context.Background(), createReq("pvc-impatient", gib, gold))
		if status.Code(err) != codes.Aborted {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := countVolumes(t, e.d); n != 1 {
		t.Fatalf("%d volumes after the retry, want 1 (%s)", n, resp.GetVolume().GetVolumeId())
	}
}

func TestPublishSemantics(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	vol, err := e.d.CreateVolume(ctx, createReq("pvc-pub", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	nodes := e.sim.NodeVMs()
	pub := func(volID, node string) (*csi.ControllerPublishVolumeResponse, error) {
		return e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: volID, NodeId: node, VolumeCapability: mountRWO()[0]})
	}
	_, err = pub(id, "4211aaaa-0000-0000-0000-000000000000")
	wantCode(t, err, codes.NotFound, "")
	_, err = pub("00000000-1111-2222-3333-444444444444", nodes[0].UUID)
	wantCode(t, err, codes.NotFound, "")

	first, err := pub(id, nodes[0].UUID)
	if err != nil {
		t.Fatal(err)
	}
	diskUUID := first.GetPublishContext()[driver.PublishContextDiskUUID]
	if diskUUID == "" {
		t.Fatal("no diskUUID in the publish context")
	}
	again, err := pub(id, nodes[0].UUID)
	if err != nil || again.GetPublishContext()[driver.PublishContextDiskUUID] != diskUUID {
		t.Fatalf("publish again: %v, %v; want diskUUID %s", again, err, diskUUID)
	}
	_, err = pub(id, nodes[1].UUID)
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.FailedPrecondition, "attached")

	got, err := e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil || !slices.Equal(got.GetStatus().GetPublishedNodeIds(), []string{nodes[0].UUID}) {
		t.Fatalf("ControllerGetVolume: %v, %v; want published on %s", got, err, nodes[0].UUID)
	}

	// A second volume gets a disk UUID of its own.
	vol2, err := e.d.CreateVolume(ctx, createReq("pvc-pub-2", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	second, err := pub(vol2.GetVolume().GetVolumeId(), nodes[0].UUID)
	if err != nil || second.GetPublishContext()[driver.PublishContextDiskUUID] == diskUUID {
		t.Fatalf("second volume: %v, %v; want a disk UUID other than %s", second, err, diskUUID)
	}

	unpub := func(volID, node string) error {
		_, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: node})
		return err
	}
	if err := unpub(id, nodes[0].UUID); err != nil {
		t.Fatal(err)
	}
	if err := unpub(id, nodes[0].UUID); err != nil {
		t.Fatalf("unpublish of a detached volume: %v", err)
	}
	if err := unpub(id, "4211aaaa-0000-0000-0000-000000000000"); err != nil {
		t.Fatalf("unpublish from a VM that does not exist: %v", err)
	}
	if _, err := pub(id, nodes[1].UUID); err != nil {
		t.Fatalf("publish elsewhere after detach: %v", err)
	}
	if err := unpub(id, ""); err != nil {
		t.Fatalf("unpublish from every node: %v", err)
	}
	if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatalf("delete of a missing volume: %v", err)
	}
	_, err = e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.NotFound, "")
}

func TestListVolumesPages(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 7 {
		resp, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-list-%d", i), gib, nil))
		if err != nil {
			t.Fatal(err)
		}
		want[resp.GetVolume().GetVolumeId()] = true
	}
	got := map[string]int{}
	token, pages := "", 0
	for {
		resp, err := e.d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 3, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.GetEntries()) > 3 {
			t.Fatalf("page of %d entries, max 3", len(resp.GetEntries()))
		}
		for _, en := range resp.GetEntries() {
			got[en.GetVolume().GetVolumeId()]++
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages, %d volumes; want 3 pages, %d volumes", pages, len(got), len(want))
	}
	for id, n := range got {
		if !want[id] || n != 1 {
			t.Fatalf("volume %s listed %d times", id, n)
		}
	}
	_, err := e.d.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: "not-a-token"})
	wantCode(t, err, codes.Aborted, "")
}

// TestCreateVolumeRoundTrips counts the SOAP requests of one CreateVolume in
// steady state (caches warm): the upstream driver needs 13 + 3 per node VM.
func TestCreateVolumeRoundTrips(t *testing.T) {
	for _, nodeVMs := range []int{3, 30} {
		t.Run(fmt.Sprintf("%d node VMs", nodeVMs), func(t *testing.T) {
			e := newEnv(t, nodeVMs)
			ctx := context.Background()
			if _, err := e.d.CreateVolume(ctx, createReq("warm-up", gib, gold)); err != nil {
				t.Fatal(err)
			}
			var most int64
			for i := range 5 {
				before := e.calls.Count()
				if _, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("counted-%d", i), gib, gold)); err != nil {
					t.Fatal(err)
				}
				most = max(most, e.calls.Count()-before)
			}
			t.Logf("%d node VMs: at most %d SOAP round trips per CreateVolume", nodeVMs, most)
			if most > 4 {
				t.Fatalf("%d round trips per CreateVolume, want at most 4", most)
			}
		})
	}
}

// TestVolumeCondition: what CNS says of a volume's health is what
// ControllerGetVolume and ListVolumes report as its condition.
func TestVolumeCondition(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	vol, err := e.d.CreateVolume(ctx, createReq("pvc-health", gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	for _, tc := range []struct {
		health   string
		abnormal bool
	}{{"green", false}, {"red", true}, {"unknown", false}, {"yellow", true}} {
		if !e.sim.SetVolumeHealth(id, tc.health) {
			t.Fatal("no such volume in the embedded vCenter")
		}
		got, err := e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
		if err != nil {
			t.Fatal(err)
		}
		if c := got.GetStatus().GetVolumeCondition(); c.GetAbnormal() != tc.abnormal || c.GetMessage() == "" {
			t.Errorf("health %s: condition %v, want abnormal=%v with a message", tc.health, c, tc.abnormal)
		}
		list, err := e.d.ListVolumes(ctx, &csi.ListVolumesRequest{})
		if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetStatus().GetVolumeCondition().GetAbnormal() != tc.abnormal {
			t.Errorf("health %s: ListVolumes %v, %v", tc.health, list, err)
		}
	}
}

// TestPublishToFullNode: a node VM whose SCSI controllers are full (59
// volumes beside its OS disk) refuses the next volume with
// ResourceExhausted, the code the CSI spec gives "max volumes attached".
func TestPublishToFullNode(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	node := e.sim.NodeVMs()[0].UUID
	for i := 0; i <= sim.NodeVolumeSlots; i++ {
		vol, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-full-%d", i), 64<<20, gold))
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: vol.GetVolume().GetVolumeId(), NodeId: node, VolumeCapability: mountRWO()[0]})
		if i < sim.NodeVolumeSlots {
			if err != nil {
				t.Fatalf("publish %d of %d: %v", i+1, sim.NodeVolumeSlots, err)
			}
			continue
		}
		wantCode(t, err, codes.ResourceExhausted, "can take no more volumes")
	}
}

// TestCreateVolumeWaitsForItsTask: with the embedded vCenter's CNS create
// taking 4 s, CreateVolume takes at least that, and until it answers the
// volume is nowhere in CNS (ListVolumes is a CnsQueryVolume).
func TestCreateVolumeWaitsForItsTask(t *testing.T) {
	e := newEnvWith(t, sim.Options{NodeVMs: 1, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 4 * time.Second}}})
	start := time.Now()
	finished := make(chan struct{})
	var createErr error
	go func() {
		defer close(finished)
		_, createErr = e.d.CreateVolume(context.Background(), createReq("pvc-slow", gib, gold))
	}()
	looks := 0
	for ended := false; !ended; {
		list, err := e.d.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
		answered := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-finished:
			ended = true
		default:
			looks++
			// The task started after start: no answer given before 4 s
			// may show its effect.
			if len(list.GetEntries()) != 0 && answered < 4*time.Second {
				t.Fatalf("volume visible %v after the start, while its 4 s CNS task runs", answered)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if createErr != nil {
		t.Fatal(createErr)
	}
	if took := time.Since(start); took < 4*time.Second {
		t.Errorf("CreateVolume answered after %v, before its 4 s task could end", took)
	}
	if looks == 0 {
		t.Error("never looked while the task ran")
	}
	if n := countVolumes(t, e.d); n != 1 {
		t.Errorf("%d volumes after CreateVolume, want 1", n)
	}
}

// TestSmallXFSVolumeIsMadeBigEnough: mkfs.xfs makes no filesystem under 300
// MiB, so an xfs block volume asked smaller is made 300 MiB (what vCenter
// holds too: ListVolumes reads it back); ext4 keeps its size;
// a limit below 300 MiB is refused naming the minimum. Kubernetes' storage
// suite found it: its 1 MiB xfs claims' pods never started (mkfs failed on
// every NodeStage).
func TestSmallXFSVolumeIsMadeBigEnough(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	const mib = int64(1) << 20
	withFS := func(name, fs string, size, limit int64) *csi.CreateVolumeRequest {
		req := createReq(name, size, gold)
		req.CapacityRange.LimitBytes = limit
		req.VolumeCapabilities[0].GetMount().FsType = fs
		return req
	}
	sizes := map[string]int64{}
	for _, tc := range []struct {
		req  *csi.CreateVolumeRequest
		want int64
	}{
		{withFS("pvc-xfs-1mi", "xfs", mib, 0), 300 * mib},
		{withFS("pvc-xfs-caps", "XFS", 10*mib, 0), 300 * mib},
		{createReq("pvc-xfs-param", mib, map[string]string{"storagepolicyname": "Gold", "csi.storage.k8s.io/fstype": "xfs"}), 300 * mib},
		{withFS("pvc-xfs-big", "xfs", 301*mib, 0), 301 * mib},
		{withFS("pvc-ext4-1mi", "ext4", mib, 0), mib},
		{withFS("pvc-default-1mi", "", mib, 0), mib},
	} {
		resp, err := e.d.CreateVolume(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.req.Name, err)
		}
		if got := resp.GetVolume().GetCapacityBytes(); got != tc.want {
			t.Errorf("%s: capacity %d MiB, want %d MiB", tc.req.Name, got/mib, tc.want/mib)
		}
		sizes[resp.GetVolume().GetVolumeId()] = tc.want
	}
	list, err := e.d.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list.GetEntries() {
		if want, ok := sizes[v.GetVolume().GetVolumeId()]; ok && v.GetVolume().GetCapacityBytes() != want {
			t.Errorf("vCenter holds %s at %d MiB, want %d MiB", v.GetVolume().GetVolumeId(), v.GetVolume().GetCapacityBytes()/mib, want/mib)
		}
	}
	_, err = e.d.CreateVolume(ctx, withFS("pvc-xfs-limited", "xfs", mib, 100*mib))
	wantCode(t, err, codes.OutOfRange, "an xfs volume must be at least 300 MiB")
}
