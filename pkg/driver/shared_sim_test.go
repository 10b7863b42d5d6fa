package driver_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
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

// A vCenter the cluster shares (issue 20): other clusters' volumes and
// snapshots, other clusters' controllers under the same vCenter user.

// clusterController is a controller of cluster id on s whose nodes are
// nodes (nil: every VM).
func clusterController(t *testing.T, s *sim.Sim, id string, nodes vcenter.NodeSource) *controller {
	t.Helper()
	c := &controller{calls: &rtcount.Counter{}}
	var err error
	c.vc, err = vcenter.New(context.Background(), vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
		Thumbprint: s.Thumbprint(), ClusterID: id, Nodes: nodes,
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

func (c *controller) mustCreate(t *testing.T, name string) string {
	t.Helper()
	resp, err := c.d.CreateVolume(context.Background(), createReq(name, gib, gold))
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVolume().GetVolumeId()
}

func (c *controller) mustSnapshot(t *testing.T, name, volID string) string {
	t.Helper()
	resp, err := c.d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: volID})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetSnapshot().GetSnapshotId()
}

// quiet waits until the controller has made no request for d.
func (c *controller) quiet(d time.Duration) {
	last := c.calls.Count()
	for {
		time.Sleep(d)
		if now := c.calls.Count(); now != last {
			last = now
			continue
		}
		return
	}
}

// TestSnapshotsAreTheClustersOwn: ListSnapshots lists this cluster's
// snapshots only; a snapshot name is unique in the cluster, not in
// vCenter; and what CreateSnapshot reads from vCenter does not grow with
// another cluster's snapshots.
func TestSnapshotsAreTheClustersOwn(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	a := clusterController(t, s, "cluster-a", nil)
	b := clusterController(t, s, "cluster-b", nil)
	ctx := context.Background()

	bVol := b.mustCreate(t, "pvc-b")
	b.mustSnapshot(t, "snapshot-same-name", bVol)
	aVol := a.mustCreate(t, "pvc-a")
	aSnap := a.mustSnapshot(t, "snapshot-same-name", aVol) // cluster b's has that name: not ours
	list, err := a.d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEntries()) != 1 || list.GetEntries()[0].GetSnapshot().GetSnapshotId() != aSnap {
		t.Errorf("ListSnapshots of cluster a = %v, want only %s", list.GetEntries(), aSnap)
	}
	// Within the cluster the name is taken.
	aVol2 := a.mustCreate(t, "pvc-a-2")
	_, err = a.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snapshot-same-name", SourceVolumeId: aVol2})
	wantCode(t, err, codes.AlreadyExists, aVol)

	// The cost of a snapshot: the same with 1 or 21 snapshots of cluster b
	// (once the watch has told of b's changes).
	cost := func(name string) int64 {
		vol := a.mustCreate(t, "pvc-for-"+name) // a volume without snapshots each time
		a.quiet(3 * time.Second)
		before := a.calls.Bytes()
		a.mustSnapshot(t, name, vol)
		return a.calls.Bytes() - before
	}
	small := cost("snapshot-a-1")
	for i := range 20 {
		v := b.mustCreate(t, fmt.Sprintf("pvc-b-%d", i))
		b.mustSnapshot(t, fmt.Sprintf("snapshot-b-%d", i), v)
	}
	large := cost("snapshot-a-2")
	if large > small+small/5 {
		t.Errorf("CreateSnapshot read %d bytes with 21 snapshots of another cluster, %d with 1: it reads other clusters' snapshots", large, small)
	}
}

// TestReadWriteManyPublishedToNodesAtOnce: publishing one file volume to
// three nodes at once answers all three (no Aborted): the guard is per
// volume and node.
func TestReadWriteManyPublishedToNodesAtOnce(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 3, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsQueryVolume": 300 * time.Millisecond}}})
	c := clusterController(t, s, "cluster-a", nil)
	ctx := context.Background()
	resp, err := c.d.CreateVolume(ctx, rwxReq("pvc-rwx-3", gold))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	var wg sync.WaitGroup
	errs := make([]error, len(s.NodeVMs()))
	for i, vm := range s.NodeVMs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
				VolumeId: id, NodeId: vm.UUID, VolumeCapability: rwxCaps()[0],
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publish to %s: %v (%s)", s.NodeVMs()[i].Name, err, status.Code(err))
		}
	}
}

// nodeUUIDs are the BIOS UUIDs of s's node VMs.
func nodeUUIDs(vms []sim.NodeVM) []string {
	out := make([]string, 0, len(vms))
	for _, vm := range vms {
		out = append(out, vm.UUID)
	}
	return out
}

// TestNodeOnAHostWithoutTheDatastore (issue 20): nfs-gold is mounted on
// the cluster's nodes' hosts only; unrelated VMs on hosts without it (zone
// B, the workload cluster) do not stop a StorageClass that names it. A
// node VM added on a host without it makes it unreachable, and the refusal
// names that node.
func TestNodeOnAHostWithoutTheDatastore(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 2, Neighbours: sim.Neighbours{VMs: 60}})
	nodes := vcenter.NewNodeSet(nodeUUIDs(s.NodeVMs())...)
	c := clusterController(t, s, "cluster-a", nodes)
	ctx := context.Background()
	var url string
	for _, ds := range s.Datastores() {
		if ds.Name == "nfs-gold" {
			url = ds.URL
		}
	}
	var strangers int
	for _, v := range s.NeighbourVMs() {
		for _, h := range s.Hosts() {
			if h.Name == v.Host && !slices.Contains(h.Datastores, "nfs-gold") {
				strangers++
			}
		}
	}
	if strangers == 0 {
		t.Fatal("no neighbour VM on a host without nfs-gold: the test would prove nothing")
	}
	params := map[string]string{"datastoreurl": url}
	if _, err := c.d.CreateVolume(ctx, createReq("pvc-on-nfs-gold", gib, params)); err != nil {
		t.Fatalf("with %d unrelated VMs on hosts without nfs-gold: %v", strangers, err)
	}

	var zoneB string
	for _, h := range s.Hosts() {
		if h.Zone == sim.ZoneB {
			zoneB = h.Name
			break
		}
	}
	vm, err := s.AddNodeVM(ctx, zoneB)
	if err != nil {
		t.Fatal(err)
	}
	nodes.Set(append(nodeUUIDs(s.NodeVMs()[:2]), vm.UUID))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ { // within seconds: a name each try (a made volume would be found again)
		_, err = c.d.CreateVolume(ctx, createReq(fmt.Sprintf("pvc-on-nfs-gold-%d", i+2), gib, params))
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantCode(t, err, codes.InvalidArgument, "not mounted for "+vm.Name)
}

// TestTwoClustersShareOneVCenter (issue 20): two clusters' controllers,
// same vCenter user, on one vCenter with 500 unrelated VMs, another
// cluster's volumes and background tasks, run full lifecycles at once
// (create, publish, snapshot, clone, expand, unpublish, delete): each
// lists only its own volumes and snapshots; nothing is duplicated, leaked
// or left attached.
func TestTwoClustersShareOneVCenter(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 4, Neighbours: sim.Neighbours{VMs: 500, TasksPerMinute: 120, OtherClusterVolumes: 10}})
	vms := s.NodeVMs()
	clusters := map[string]*controller{
		"cluster-a": clusterController(t, s, "cluster-a", vcenter.StaticNodes(vms[0].UUID, vms[1].UUID)),
		"cluster-b": clusterController(t, s, "cluster-b", vcenter.StaticNodes(vms[2].UUID, vms[3].UUID)),
	}
	nodeOf := map[string][]string{"cluster-a": {vms[0].UUID, vms[1].UUID}, "cluster-b": {vms[2].UUID, vms[3].UUID}}
	var wg sync.WaitGroup
	for id, c := range clusters {
		for i := range 3 {
			wg.Go(func() { lifecycle(t, c, fmt.Sprintf("%s-%d", id, i), nodeOf[id][i%2]) })
		}
	}
	// Midway and after: each lists only its own.
	time.Sleep(2 * time.Second)
	for id, c := range clusters {
		onlyOwn(t, s, c, id)
	}
	wg.Wait()
	for id, c := range clusters {
		onlyOwn(t, s, c, id)
	}
	counts := map[string]int{}
	for _, v := range s.Volumes() {
		counts[v.Name]++
		if strings.HasPrefix(v.Name, "cluster-") {
			t.Errorf("volume %s (%s) left behind (attached to %q)", v.Name, v.ID, v.VM)
		}
	}
	for name, n := range counts {
		if n > 1 && strings.HasPrefix(name, "cluster-") {
			t.Errorf("%d volumes named %s", n, name)
		}
	}
	if n := s.NeighbourTaskCounts(); len(n) == 0 {
		t.Error("no background task ran meanwhile")
	} else {
		t.Logf("background tasks meanwhile: %v", n)
	}
}

// lifecycle runs one volume's life as Kubernetes drives it.
func lifecycle(t *testing.T, c *controller, name, node string) {
	ctx := context.Background()
	call := func(what string, err error) bool {
		if err != nil {
			t.Errorf("%s %s: %v", name, what, err)
		}
		return err == nil
	}
	resp, err := c.d.CreateVolume(ctx, createReq(name, gib, gold))
	if !call("create", err) {
		return
	}
	id := resp.GetVolume().GetVolumeId()
	cap := mountRWO()[0]
	_, err = c.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: cap})
	call("publish", err)
	// Grown while in use (a disk with snapshots can't grow).
	_, err = c.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}, VolumeCapability: cap})
	call("expand", err)
	snap, err := c.d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-" + name, SourceVolumeId: id})
	call("snapshot", err)
	clone := createReq(name+"-clone", 2*gib, gold)
	clone.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}
	cloned, err := c.d.CreateVolume(ctx, clone)
	call("clone", err)
	_, err = c.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node})
	call("unpublish", err)
	if cloned != nil {
		_, err = c.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: cloned.GetVolume().GetVolumeId()})
		call("delete the clone", err)
	}
	if snap != nil {
		_, err = c.d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()})
		call("delete the snapshot", err)
	}
	_, err = c.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	call("delete", err)
}

// onlyOwn checks that the controller lists only its cluster's volumes and
// snapshots (named after the cluster here; the names as vCenter has them).
func onlyOwn(t *testing.T, s *sim.Sim, c *controller, id string) {
	t.Helper()
	ctx := context.Background()
	vols, err := c.d.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, v := range s.Volumes() {
		names[v.ID] = v.Name
	}
	for _, e := range vols.GetEntries() {
		vid := e.GetVolume().GetVolumeId()
		if name, ok := names[vid]; ok && !strings.HasPrefix(name, id) {
			t.Errorf("%s lists volume %s (%q), not its own", id, vid, name)
		}
	}
	snaps, err := c.d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range snaps.GetEntries() {
		if !slices.Contains(allVolumeIDsOf(t, c), e.GetSnapshot().GetSourceVolumeId()) {
			t.Errorf("%s lists snapshot %s of volume %s, not one of its own", id, e.GetSnapshot().GetSnapshotId(), e.GetSnapshot().GetSourceVolumeId())
		}
	}
}

func allVolumeIDsOf(t *testing.T, c *controller) []string {
	var ids []string
	for _, n := range allVolumeIDs(t, c.d) {
		ids = append(ids, n.id)
	}
	return ids
}
