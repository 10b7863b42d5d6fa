package driver_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/test/nfsmount"
)

// TestHungNFSServer: vSAN File Service's NFS server hangs for longer than
// many kubelet stats periods while a share is mounted hard on the node,
// through the NFS stand-in in hard mode (a kernel hard mount: calls wait
// for the server, with no deadline). NodeGetVolumeStats, asked 50 times,
// answers each time with the abnormal condition "NFS server not
// responding"; the node plugin's goroutines and OS threads stay bounded (a
// stuck statfs per path, not per call); a block volume on the same node
// keeps working; NodeUnpublishVolume of the share ends; and when the server
// is back, the share that stayed mounted works again, and so does a new
// mount.
func TestHungNFSServer(t *testing.T) {
	simtest.SkipShort(t, "starts the embedded vCenter, mounts NFS shares and loop devices (as root)")
	if os.Geteuid() != 0 {
		t.Skip("needs root: NFS mounts, loop devices")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse for the NFS stand-in")
	}
	installed, err := nfsmount.EnsureInstalled(filepath.Join(t.TempDir(), "nfs-helper"))
	if err != nil {
		t.Fatalf("the NFS stand-in: %v", err)
	}
	t.Cleanup(func() { _ = nfsmount.Uninstall() })
	if !installed {
		t.Skip("this kernel mounts NFS itself: the test needs the stand-in's hard mode (test/nfsmount)")
	}
	t.Setenv("NFSMOUNT_HARD", "1") // mount(8), run by the node plugin, passes it to the stand-in

	e := newEnvWith(t, sim.Options{NodeVMs: 1, Hypervisor: true})
	if e.sim.NFSAddress() == "" {
		t.Fatal("the embedded vCenter serves no NFS")
	}
	vm := e.sim.NodeVMs()[0]
	nd, err := driver.NewDriver(driver.Options{Mode: driver.ModeNode, Version: "test", NodeID: vm.UUID, ByIDDir: vm.ByIDDir},
		nil, node.New(node.Options{DeviceWait: 5 * time.Second, CallWait: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	shareA, shareB := filepath.Join(dir, "pod-a", "share"), filepath.Join(dir, "pod-b", "share")
	staging, blockTarget := filepath.Join(dir, "staging"), filepath.Join(dir, "pod-c", "disk")
	if err := os.Mkdir(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{shareA, shareB, blockTarget, staging} {
		t.Cleanup(func() { // whatever happened: nothing left mounted
			for unix.Unmount(p, unix.MNT_FORCE) == nil {
			}
			for unix.Unmount(p, unix.MNT_DETACH) == nil {
			}
		})
	}

	// A share, mounted for two pods.
	fv, err := e.d.CreateVolume(ctx, rwxReq("pvc-hung-nfs", gold))
	if err != nil {
		t.Fatal(err)
	}
	fileID := fv.GetVolume().GetVolumeId()
	fpub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: fileID, NodeId: vm.UUID, VolumeCapability: rwxCaps()[0]})
	if err != nil {
		t.Fatal(err)
	}
	publishShare := func(target string) {
		t.Helper()
		if _, err := nd.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: fileID, TargetPath: target,
			VolumeCapability: rwxCaps()[0], PublishContext: fpub.GetPublishContext()}); err != nil {
			t.Fatalf("NodePublishVolume of the share at %s: %v", target, err)
		}
	}
	publishShare(shareA)
	publishShare(shareB)
	if err := os.WriteFile(filepath.Join(shareA, "hello"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A block volume on the same node, staged and published.
	bv, err := e.d.CreateVolume(ctx, createReq("pvc-beside-the-share", 256<<20, gold))
	if err != nil {
		t.Fatal(err)
	}
	blockID := bv.GetVolume().GetVolumeId()
	bpub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: blockID, NodeId: vm.UUID, VolumeCapability: mountRWO()[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nd.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: blockID, StagingTargetPath: staging,
		VolumeCapability: mountRWO()[0], PublishContext: bpub.GetPublishContext()}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	blockPub := &csi.NodePublishVolumeRequest{VolumeId: blockID, StagingTargetPath: staging, TargetPath: blockTarget,
		VolumeCapability: mountRWO()[0], PublishContext: bpub.GetPublishContext()}
	if _, err := nd.NodePublishVolume(ctx, blockPub); err != nil {
		t.Fatalf("NodePublishVolume of the block volume: %v", err)
	}

	stats := func(id, path string) *csi.NodeGetVolumeStatsResponse {
		t.Helper()
		resp, err := within(t, "NodeGetVolumeStats of "+path, func() (*csi.NodeGetVolumeStatsResponse, error) {
			return nd.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path})
		})
		if err != nil {
			t.Fatalf("NodeGetVolumeStats of %s: %v", path, err)
		}
		return resp
	}
	wantNormal := func(id, path string) {
		t.Helper()
		if st := stats(id, path); st.GetVolumeCondition().GetAbnormal() || len(st.GetUsage()) == 0 || st.GetUsage()[0].GetTotal() == 0 {
			t.Errorf("stats of %s: %v; want usage and a normal condition", path, st)
		}
	}
	wantNormal(fileID, shareA)
	wantNormal(blockID, blockTarget)

	goroutines, threads := runtime.NumGoroutine(), osThreads(t)
	e.sim.HangNFS()
	t.Cleanup(e.sim.RestartNFS) // first of the cleanups: the stuck calls end

	// Many stats periods: kubelet asks, gives up, asks again.
	for i := range 50 {
		path := []string{shareA, shareB}[i%2]
		st := stats(fileID, path)
		if c := st.GetVolumeCondition(); !c.GetAbnormal() || !strings.Contains(c.GetMessage(), "NFS server not responding") {
			t.Fatalf("stats %d of %s with the NFS server hung: %v; want an abnormal condition, NFS server not responding", i+1, path, st)
		}
		if i%10 == 9 {
			wantNormal(blockID, blockTarget)
		}
	}
	t.Logf("condition: %s", stats(fileID, shareA).GetVolumeCondition().GetMessage())
	checkBounded := func(when string) {
		t.Helper()
		g, th := runtime.NumGoroutine(), osThreads(t)
		t.Logf("%s: %d goroutines (%d before the hang), %d OS threads (%d before)", when, g, goroutines, th, threads)
		// Bounded: a statfs stuck per path (2 here), not one per call (50).
		if g > goroutines+10 || th > threads+10 {
			t.Errorf("%s: %d goroutines (%d before the hang), %d OS threads (%d before): they grow with the calls", when, g, goroutines, th, threads)
		}
	}
	checkBounded("after 50 stats of the hung share")

	// The block volume works: unpublished, published again, its data there.
	if err := os.WriteFile(filepath.Join(blockTarget, "block"), []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := within(t, "NodeUnpublishVolume of the block volume", func() (*csi.NodeUnpublishVolumeResponse, error) {
		return nd.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: blockID, TargetPath: blockTarget})
	}); err != nil {
		t.Fatalf("NodeUnpublishVolume of the block volume while the NFS server hangs: %v", err)
	}
	if _, err := within(t, "NodePublishVolume of the block volume", func() (*csi.NodePublishVolumeResponse, error) {
		return nd.NodePublishVolume(ctx, blockPub)
	}); err != nil {
		t.Fatalf("NodePublishVolume of the block volume while the NFS server hangs: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(blockTarget, "block")); err != nil || string(b) != "disk" {
		t.Errorf("the block volume's file: %q, %v", b, err)
	}

	// The unpublish of the share ends, server or not.
	if _, err := within(t, "NodeUnpublishVolume of the share", func() (*csi.NodeUnpublishVolumeResponse, error) {
		return nd.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: fileID, TargetPath: shareA})
	}); err != nil {
		t.Fatalf("NodeUnpublishVolume of the share while its server hangs: %v", err)
	}
	if mountedAt(t, shareA) {
		t.Errorf("%s still mounted after NodeUnpublishVolume", shareA)
	}
	if _, err := os.Lstat(shareA); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the target after NodeUnpublishVolume: %v", err)
	}
	checkBounded("after the unpublish")

	// The server is back: the share that stayed mounted answers again
	// (its stuck statfs returns, the next stats are normal), its data is
	// there, and a new mount works.
	e.sim.RestartNFS()
	deadline := time.Now().Add(2 * time.Minute) // a hang guard
	for stats(fileID, shareB).GetVolumeCondition().GetAbnormal() {
		if time.Now().After(deadline) {
			t.Fatalf("stats of %s still abnormal 2 minutes after the NFS server came back: %v", shareB, stats(fileID, shareB))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantNormal(fileID, shareB)
	read := func(p string) {
		t.Helper()
		b, err := within(t, "reading "+p, func() ([]byte, error) { return os.ReadFile(p) })
		if err != nil || string(b) != "kept" {
			t.Errorf("%s once the server is back: %q, %v", p, b, err)
		}
	}
	read(filepath.Join(shareB, "hello"))
	publishShare(shareA)
	read(filepath.Join(shareA, "hello"))
	wantNormal(fileID, shareA)

	for _, p := range []string{shareA, shareB} {
		if _, err := nd.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: fileID, TargetPath: p}); err != nil {
			t.Errorf("NodeUnpublishVolume of %s: %v", p, err)
		}
	}
	if _, err := nd.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: blockID, TargetPath: blockTarget}); err != nil {
		t.Error(err)
	}
	if _, err := nd.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: blockID, StagingTargetPath: staging}); err != nil {
		t.Error(err)
	}
}

// within runs op and waits for it at most a minute (a hang guard: the
// calls it runs answer within seconds, or hang for good).
func within[T any](t *testing.T, what string, op func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(time.Minute):
		t.Fatalf("%s: no answer in a minute", what)
	}
	var zero T
	return zero, nil // not reached: Fatalf ends the test
}

// osThreads is the number of OS threads of this process.
func osThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// mountedAt says whether the mount table has a mount at path (read
// without looking at path, whose server may be gone).
func mountedAt(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
