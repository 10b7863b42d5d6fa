package driver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
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
	s := startSim(t, sim.Options{NodeVMs: 1})
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
	s := startSim(t, sim.Options{NodeVMs: 3, Latency: sim.Latency{Methods: map[string]time.Duration{"CnsQueryVolume": 300 * time.Millisecond}}})
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
