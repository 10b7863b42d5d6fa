package walkthrough

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// csiEnv is the driver (controller and node, in this process) on the
// embedded vCenter with real loop devices, spoken to over its CSI socket.
type csiEnv struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	sim  *sim.Sim
	vm   sim.NodeVM
	ctrl csi.ControllerClient
	node csi.NodeClient
}

// newCSIEnv starts it; everything is stopped and checked for leftovers
// (loop devices, mounts) when the test ends.
func newCSIEnv(t *testing.T, c app.Config) *csiEnv {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), Hypervisor: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader(s.ConfigINI("features", false)), "embedded vCenter")
	if err != nil {
		t.Fatal(err)
	}
	vm := s.NodeVMs()[0]
	c.Mode, c.Version, c.NodeID, c.ByIDDir = driver.ModeAll, "features", vm.UUID, vm.ByIDDir
	d, closeAll, err := app.New(ctx, c, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	l, err := driver.Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- d.Serve(serveCtx, l, nil) }()
	conn, err := dial(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		stop()
		<-served
		closeAll()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		cancel()
		checkNothingLeft(t, dir)
	})
	return &csiEnv{t: t, ctx: ctx, dir: dir, sim: s, vm: vm,
		ctrl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn)}
}

// testVol is one volume as a pod on the node VM uses it.
type testVol struct {
	id      string
	cap     *csi.VolumeCapability
	pub     map[string]string
	staging string
	target  string
}

func mountCap(fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// create makes a Gold volume, from src when not nil.
func (e *csiEnv) create(name string, size int64, c *csi.VolumeCapability, src *csi.VolumeContentSource) *testVol {
	e.t.Helper()
	r, err := e.ctrl.CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{c}, Parameters: map[string]string{"storagepolicyname": "Gold"},
		VolumeContentSource: src,
	})
	if err != nil {
		e.t.Fatalf("CreateVolume %s: %v", name, err)
	}
	v := &testVol{id: r.GetVolume().GetVolumeId(), cap: c,
		staging: filepath.Join(e.dir, "work", name, "staging"), target: filepath.Join(e.dir, "work", name, "target")}
	e.t.Cleanup(func() { e.remove(v) })
	return v
}

// attach publishes the volume to the node VM, stages and publishes it.
func (e *csiEnv) attach(v *testVol) {
	e.t.Helper()
	if v.pub == nil {
		r, err := e.ctrl.ControllerPublishVolume(e.ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: v.id, NodeId: e.vm.UUID, VolumeCapability: v.cap})
		if err != nil {
			e.t.Fatalf("ControllerPublishVolume %s: %v", v.id, err)
		}
		v.pub = r.GetPublishContext()
	}
	e.stage(v)
	if _, err := e.node.NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{
		VolumeId: v.id, PublishContext: v.pub, StagingTargetPath: v.staging, TargetPath: v.target, VolumeCapability: v.cap,
	}); err != nil {
		e.t.Fatalf("NodePublishVolume %s: %v", v.id, err)
	}
}

func (e *csiEnv) stage(v *testVol) {
	e.t.Helper()
	if _, err := e.node.NodeStageVolume(e.ctx, &csi.NodeStageVolumeRequest{
		VolumeId: v.id, PublishContext: v.pub, StagingTargetPath: v.staging, VolumeCapability: v.cap,
	}); err != nil {
		e.t.Fatalf("NodeStageVolume %s: %v", v.id, err)
	}
}

// unmount unpublishes and unstages; the disk stays attached.
func (e *csiEnv) unmount(v *testVol) {
	e.t.Helper()
	if _, err := e.node.NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target}); err != nil {
		e.t.Fatalf("NodeUnpublishVolume %s: %v", v.id, err)
	}
	if _, err := e.node.NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging}); err != nil {
		e.t.Fatalf("NodeUnstageVolume %s: %v", v.id, err)
	}
}

// remove undoes everything: unmount, detach, delete. Errors are logged:
// it runs at cleanup, after a test may have failed half-way.
func (e *csiEnv) remove(v *testVol) {
	ctx := context.WithoutCancel(e.ctx)
	_, _ = e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target})
	_, _ = e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.staging})
	if _, err := e.ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: e.vm.UUID}); err != nil {
		e.t.Errorf("ControllerUnpublishVolume %s: %v", v.id, err)
	}
	if _, err := e.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id}); err != nil {
		e.t.Errorf("DeleteVolume %s: %v", v.id, err)
	}
}

// writeFile writes into the pod's volume and flushes it to the disk.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	syscall.Sync()
}

func readFile(t *testing.T, path string) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

// dfSize is the filesystem's size as df reports it (statfs), and df's line.
func dfSize(t *testing.T, path string) (int64, string) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("df", "-h", "--output=source,fstype,size,used,avail,target", path).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return int64(st.Blocks) * st.Bsize, lines[len(lines)-1]
}

func codeOf(err error) codes.Code { return status.Code(err) }
