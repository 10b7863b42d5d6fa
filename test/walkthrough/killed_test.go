package walkthrough

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// TestControllerKilledMidOperation (issue 11, finding 1): the controller
// process is killed (SIGKILL) while its CNS tasks run (4 s each): a create,
// a snapshot and a clone at once. A new controller process takes the
// retries. 20 times: exactly one volume, snapshot and clone each, and the
// retries return them; no transient clone snapshot stays behind.
func TestControllerKilledMidOperation(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	binary := buildDriver(ctx, t, dir)
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), NodeVMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "killed", false); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	start := func() (*Driver, csi.ControllerClient) {
		d, err := StartDriver(ctx, binary, "controller", conf, s.NodeVMs()[0], dir, &syncWriter{w: &logs})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := dial(d.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return d, csi.NewControllerClient(conn)
	}
	d, c := start()
	src, err := c.CreateVolume(ctx, volumeRequest("pvc-killed-source", nil))
	if err != nil {
		t.Fatal(err)
	}
	srcID := src.GetVolume().GetVolumeId()
	s.SetLatency(sim.Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 4 * time.Second, "CnsCreateSnapshots": 4 * time.Second}})

	const kills = 20
	for i := range kills {
		create := volumeRequest(fmt.Sprintf("pvc-killed-%d", i), nil)
		clone := volumeRequest(fmt.Sprintf("pvc-killed-clone-%d", i), &csi.VolumeContentSource{
			Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: srcID}}})
		snap := &csi.CreateSnapshotRequest{Name: fmt.Sprintf("snap-killed-%d", i), SourceVolumeId: srcID}
		mark := s.LastEvent()
		for _, op := range []func(context.Context) error{
			func(ctx context.Context) error { _, err := c.CreateVolume(ctx, create); return err },
			func(ctx context.Context) error { _, err := c.CreateVolume(ctx, clone); return err },
			func(ctx context.Context) error { _, err := c.CreateSnapshot(ctx, snap); return err },
		} {
			go func() { _ = op(ctx) }()
		}
		// Kill it once its three first tasks run (the clone's is its snapshot).
		waitForTasks(t, s, mark, 3)
		d.Kill()
		d, c = start()
		vol := retry(t, func(ctx context.Context) (string, error) {
			r, err := c.CreateVolume(ctx, create)
			return r.GetVolume().GetVolumeId(), err
		})
		cl := retry(t, func(ctx context.Context) (string, error) {
			r, err := c.CreateVolume(ctx, clone)
			return r.GetVolume().GetVolumeId(), err
		})
		sn := retry(t, func(ctx context.Context) (string, error) {
			r, err := c.CreateSnapshot(ctx, snap)
			return r.GetSnapshot().GetSnapshotId(), err
		})
		for name, id := range map[string]string{create.Name: vol, clone.Name: cl} {
			if ids := volumesNamed(s, name); len(ids) != 1 || ids[0] != id {
				t.Errorf("kill %d: volumes named %s: %v, the retry returned %s", i, name, ids, id)
			}
		}
		var named []string
		for _, desc := range s.Snapshots()[srcID] {
			if desc == snap.Name {
				named = append(named, desc)
			}
		}
		if len(named) != 1 || !strings.HasSuffix(sn, "+"+snapshotIDOf(t, sn)) {
			t.Errorf("kill %d: %d snapshots named %s (retry returned %s)", i, len(named), snap.Name, sn)
		}
		// At most --max-snapshots-per-volume snapshots per volume: make room.
		if _, err := c.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: sn}); err != nil {
			t.Fatal(err)
		}
	}
	for _, desc := range s.Snapshots()[srcID] {
		if strings.HasPrefix(desc, "clone source of ") {
			t.Errorf("a clone's transient snapshot stayed: %s", desc)
		}
	}
	if n := len(s.Volumes()); n != 1+2*kills {
		t.Errorf("%d volumes, want %d", n, 1+2*kills)
	}
	_ = d.Stop()
}

// waitForTasks waits until n CNS tasks started after event mark.
func waitForTasks(t *testing.T, s *sim.Sim, mark int64, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		started := 0
		for _, e := range s.Events(mark) {
			if e.Kind == sim.EventTaskStart && (e.Method == "CnsCreateVolume" || e.Method == "CnsCreateSnapshots") {
				started++
			}
		}
		if started >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d tasks started", started, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retry calls op as the sidecars do: again after Unavailable, Aborted or
// a timeout (20 s each try), until it answers.
func retry(t *testing.T, op func(context.Context) (string, error)) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		v, err := op(ctx)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return v
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			if time.Now().After(deadline) {
				t.Fatalf("still failing after 3 minutes: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("%v", err)
		}
	}
}

func volumesNamed(s *sim.Sim, name string) []string {
	var ids []string
	for _, v := range s.Volumes() {
		if v.Name == name {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

func snapshotIDOf(t *testing.T, id string) string {
	t.Helper()
	_, snap, ok := strings.Cut(id, "+")
	if !ok {
		t.Fatalf("snapshot ID %q", id)
	}
	return snap
}

func volumeRequest(name string, src *csi.VolumeContentSource) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name: name,
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
		CapacityRange:       &csi.CapacityRange{RequiredBytes: 64 << 20},
		Parameters:          map[string]string{"storagepolicyname": "Gold"},
		VolumeContentSource: src,
	}
}

// buildDriver builds bin/vsphere-csi into dir.
func buildDriver(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	binary := filepath.Join(dir, "vsphere-csi")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/vsphere-cns/vsphere-csi/cmd/vsphere-csi")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binary
}
