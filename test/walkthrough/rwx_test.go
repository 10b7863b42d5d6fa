package walkthrough

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/test/nfsmount"
)

// rwxEnv is the driver as a cluster runs it for ReadWriteMany: a
// controller process and one node plugin process per node VM, each its own
// process with its own socket, on the embedded vCenter and its NFS server.
// Nodes mount the shares with `mount -t nfs4`: the kernel's NFS client, or
// on a kernel without one, the test helper (test/nfsmount).
type rwxEnv struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	sim    *sim.Sim
	binary string
	conf   string
	logs   *bytes.Buffer
	ctrlP  *Driver
	ctrl   csi.ControllerClient
	nodes  []csi.NodeClient
	vms    []sim.NodeVM
}

func newRWXEnv(t *testing.T, netPermissions string) *rwxEnv {
	t.Helper()
	needRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil && !nfsmount.KernelHasNFS() {
		t.Skip("no NFS client and no /dev/fuse for the test helper")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	if _, err := nfsmount.EnsureInstalled(filepath.Join(dir, "nfs-helper")); err != nil {
		t.Fatalf("the NFS mount helper: %v", err)
	}
	t.Cleanup(func() { _ = nfsmount.Uninstall() })
	e := &rwxEnv{t: t, ctx: ctx, dir: dir, logs: &bytes.Buffer{}}
	e.binary = buildDriver(ctx, t, dir)
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), NodeVMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = s
	if s.NFSAddress() == "" {
		t.Fatal("the embedded vCenter serves no NFS (port 2049 as root should be free)")
	}
	e.conf = filepath.Join(dir, "csi-vsphere.conf")
	if err := os.WriteFile(e.conf, []byte(s.ConfigINI("rwx", false)+netPermissions), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.logs.String())
		}
	})
	e.startController()
	e.vms = s.NodeVMs()
	for i, vm := range e.vms {
		ndir := filepath.Join(dir, fmt.Sprintf("node-%d", i+1))
		if err := os.MkdirAll(ndir, 0o750); err != nil {
			t.Fatal(err)
		}
		p, err := StartDriver(ctx, e.binary, "node", "", vm, ndir, &syncWriter{w: e.logs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop() })
		conn, err := dial(p.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		e.nodes = append(e.nodes, csi.NewNodeClient(conn))
	}
	t.Cleanup(func() {
		if err := e.sim.Close(); err != nil {
			t.Error(err)
		}
		if m, _ := MountsUnder(dir); len(m) > 0 {
			t.Errorf("left mounted: %v", m)
		}
	})
	return e
}

func (e *rwxEnv) startController() {
	p, err := StartDriver(e.ctx, e.binary, "controller", e.conf, sim.NodeVM{}, e.dir, &syncWriter{w: e.logs})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Stop() })
	conn, err := dial(p.Endpoint)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	e.ctrlP, e.ctrl = p, csi.NewControllerClient(conn)
}

func rwxCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwx = rwxCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)

// create makes a Gold ReadWriteMany volume of size bytes.
func (e *rwxEnv) create(name string, size int64) *csi.Volume {
	e.t.Helper()
	resp, err := e.ctrl.CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{rwx},
		Parameters:         map[string]string{"storagepolicyname": "Gold"},
	})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return resp.GetVolume()
}

// mount publishes the volume on node i at a target of its own, as kubelet
// does for a pod there (controller publish, stage, publish).
func (e *rwxEnv) mount(i int, volID string, c *csi.VolumeCapability, readOnly bool, target string) (string, error) {
	pub, err := e.ctrl.ControllerPublishVolume(e.ctx, &csi.ControllerPublishVolumeRequest{
		VolumeId: volID, NodeId: e.vms[i].UUID, VolumeCapability: c,
	})
	if err != nil {
		return "", fmt.Errorf("controller publish: %w", err)
	}
	staging := filepath.Join(e.dir, fmt.Sprintf("node-%d", i+1), "staging", strings.ReplaceAll(volID, ":", "_"))
	if _, err := e.nodes[i].NodeStageVolume(e.ctx, &csi.NodeStageVolumeRequest{
		VolumeId: volID, StagingTargetPath: staging, VolumeCapability: c, PublishContext: pub.GetPublishContext(),
	}); err != nil {
		return "", fmt.Errorf("stage: %w", err)
	}
	target = filepath.Join(e.dir, fmt.Sprintf("node-%d", i+1), "pods", target)
	_, err = e.nodes[i].NodePublishVolume(e.ctx, &csi.NodePublishVolumeRequest{
		VolumeId: volID, StagingTargetPath: staging, TargetPath: target, VolumeCapability: c,
		PublishContext: pub.GetPublishContext(), Readonly: readOnly,
	})
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	return target, nil
}

func (e *rwxEnv) mustMount(i int, volID string, c *csi.VolumeCapability, readOnly bool, target string) string {
	e.t.Helper()
	p, err := e.mount(i, volID, c, readOnly, target)
	if err != nil {
		e.t.Fatalf("node %d: %v", i+1, err)
	}
	return p
}

// unmount undoes mount.
func (e *rwxEnv) unmount(i int, volID, target string) {
	e.t.Helper()
	if _, err := e.nodes[i].NodeUnpublishVolume(e.ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volID, TargetPath: target}); err != nil {
		e.t.Fatalf("node %d: unpublish: %v", i+1, err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		e.t.Errorf("node %d: target %s after unpublish: %v, want it removed", i+1, target, err)
	}
	staging := filepath.Join(e.dir, fmt.Sprintf("node-%d", i+1), "staging", strings.ReplaceAll(volID, ":", "_"))
	if _, err := e.nodes[i].NodeUnstageVolume(e.ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volID, StagingTargetPath: staging}); err != nil {
		e.t.Fatalf("node %d: unstage: %v", i+1, err)
	}
	if _, err := e.ctrl.ControllerUnpublishVolume(e.ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: e.vms[i].UUID}); err != nil {
		e.t.Fatalf("node %d: controller unpublish: %v", i+1, err)
	}
}

func (e *rwxEnv) stats(i int, volID, path string) *csi.NodeGetVolumeStatsResponse {
	e.t.Helper()
	st, err := e.nodes[i].NodeGetVolumeStats(e.ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volID, VolumePath: path})
	if err != nil {
		e.t.Fatalf("node %d: stats: %v", i+1, err)
	}
	return st
}

// TestReadWriteManyOverNFS is the ReadWriteMany walkthrough over CSI: two node
// plugins (two node VMs) mount one vSAN file share, one writes, the other
// reads it; a read-only publish refuses writes; the share survives a
// vCenter restart under its mounts; unpublish and delete leave nothing
// mounted and no share.
func TestReadWriteManyOverNFS(t *testing.T) {
	e := newRWXEnv(t, "")
	vol := e.create("pvc-rwx-walkthrough", 1<<30)
	id := vol.GetVolumeId()
	if !strings.HasPrefix(id, "file:") || vol.GetVolumeContext()["type"] != "vSphere CNS File Volume" {
		t.Fatalf("volume %s, context %v: want a CNS file volume", id, vol.GetVolumeContext())
	}
	shares := e.sim.Shares()
	if len(shares) != 1 || shares[0].VolumeID != id {
		t.Fatalf("shares %+v", shares)
	}
	// Upstream's default net permissions: everyone, read-write, root allowed.
	if p := shares[0].Permissions; len(p) != 1 || p[0].Ips != "*" || p[0].Permissions != "READ_WRITE" || !p[0].AllowRoot {
		t.Errorf("net permissions %+v, want * READ_WRITE with root", p)
	}

	a := e.mustMount(0, id, rwx, false, "pod-a")
	b := e.mustMount(1, id, rwx, false, "pod-b")
	ro := e.mustMount(1, id, rwxCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), false, "pod-reader")

	writeFile(t, filepath.Join(a, "shared.txt"), "written on node 1\n")
	if got, _ := readFile(t, filepath.Join(b, "shared.txt")); got != "written on node 1\n" {
		t.Fatalf("node 2 reads %q", got)
	}
	f, err := os.OpenFile(filepath.Join(b, "shared.txt"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("and on node 2\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := readFile(t, filepath.Join(a, "shared.txt")); got != "written on node 1\nand on node 2\n" {
		t.Fatalf("node 1 reads %q after node 2 appended", got)
	}
	if got, _ := readFile(t, filepath.Join(ro, "shared.txt")); !strings.HasPrefix(got, "written on node 1") {
		t.Errorf("the read-only mount reads %q", got)
	}
	err = os.WriteFile(filepath.Join(ro, "nope.txt"), []byte("x"), 0o600)
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
		t.Errorf("writing through a read-only publish: %v, want EROFS", err)
	}
	// The data is the share's, on the vSAN datastore.
	if data, err := os.ReadFile(filepath.Join(shares[0].Dir, "shared.txt")); err != nil || !strings.Contains(string(data), "node 2") {
		t.Errorf("the share's file: %q %v", data, err)
	}

	// Stats: the share's quota; expansion grows it online, nothing to do on the node.
	if st := e.stats(0, id, a); st.GetUsage()[0].GetTotal() != 1<<30 || st.GetVolumeCondition().GetAbnormal() {
		t.Errorf("stats: %v", st)
	}
	exp, err := e.ctrl.ControllerExpandVolume(e.ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}, VolumeCapability: rwx,
	})
	if err != nil || exp.GetNodeExpansionRequired() || exp.GetCapacityBytes() != 2<<30 {
		t.Fatalf("expand: %v %v, want 2 GiB and no node expansion", exp, err)
	}
	if st := e.stats(1, id, b); st.GetUsage()[0].GetTotal() != 2<<30 {
		t.Errorf("node 2 sees %d bytes after expansion, want 2 GiB", st.GetUsage()[0].GetTotal())
	}

	// What file volumes don't do.
	_, err = e.ctrl.CreateSnapshot(e.ctx, &csi.CreateSnapshotRequest{Name: "snap-of-rwx", SourceVolumeId: id})
	wantCodeIs(t, err, codes.FailedPrecondition, "block volumes only")
	_, err = e.ctrl.CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name: "clone-of-rwx", VolumeCapabilities: []*csi.VolumeCapability{mountCap("ext4")},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}},
	})
	wantCodeIs(t, err, codes.FailedPrecondition, "only block volumes can be cloned")
	_, err = e.ctrl.CreateVolume(e.ctx, &csi.CreateVolumeRequest{
		Name: "rwx-from-clone", VolumeCapabilities: []*csi.VolumeCapability{rwx},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}},
	})
	wantCodeIs(t, err, codes.FailedPrecondition, "only block volumes can be cloned")
	if len(e.sim.Volumes()) != 1 {
		t.Errorf("volumes after refused requests: %v", e.sim.Volumes())
	}
	list, err := e.ctrl.ListVolumes(e.ctx, &csi.ListVolumesRequest{})
	if err != nil || len(list.GetEntries()) != 1 || len(list.GetEntries()[0].GetStatus().GetPublishedNodeIds()) != 2 {
		t.Errorf("ListVolumes: %v %v, want the file volume published to both nodes", list, err)
	}

	// The embedded vCenter restarts (its NFS server with it): the mounts
	// wait (hard) and go on with the same share.
	dir := filepath.Join(e.dir, "vcenter")
	e.sim.Stop(sim.StopOptions{})
	time.Sleep(2 * time.Second)
	s2, err := sim.Start(e.ctx, sim.Options{Dir: dir, NodeVMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = s2
	if got, _ := readFile(t, filepath.Join(b, "shared.txt")); !strings.Contains(got, "node 2") {
		t.Errorf("after the vCenter restart node 2 reads %q", got)
	}
	writeFile(t, filepath.Join(a, "after-restart.txt"), "still shared\n")
	if got, _ := readFile(t, filepath.Join(b, "after-restart.txt")); got != "still shared\n" {
		t.Errorf("after the vCenter restart: %q", got)
	}

	e.unmount(0, id, a)
	e.unmount(1, id, b)
	e.unmount(1, id, ro)
	if _, err := e.ctrl.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if len(e.sim.Shares()) != 0 || len(e.sim.Volumes()) != 0 {
		t.Errorf("after delete: shares %v, volumes %v", e.sim.Shares(), e.sim.Volumes())
	}
	if _, err := os.Stat(shares[0].Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the share's directory after delete: %v", err)
	}
	if m, _ := MountsUnder(e.dir); len(m) > 0 {
		t.Errorf("left mounted: %v", m)
	}
}

// TestNetPermissionsInFileOrder: the [NetPermissions] sections go to vSAN
// in the file's order, so for an address two ranges cover, the first
// decides: loopback read-only before everyone read-write gives this node a
// share it can read and not write; everyone NO_ACCESS refuses the mount.
func TestNetPermissionsInFileOrder(t *testing.T) {
	e := newRWXEnv(t, `
[NetPermissions "loopback-read-only"]
ips = "127.0.0.0/8"
permissions = "READ_ONLY"
rootsquash = true

[NetPermissions "everyone"]
ips = "*"
permissions = "READ_WRITE"
`)
	id := e.create("pvc-rwx-ordered", 256<<20).GetVolumeId()
	p := e.sim.Shares()[0].Permissions
	if len(p) != 2 || p[0].Ips != "127.0.0.0/8" || p[0].Permissions != "READ_ONLY" || p[0].AllowRoot || p[1].Ips != "*" {
		t.Fatalf("permissions %+v, want the file's order with root squash on the first", p)
	}
	target := e.mustMount(0, id, rwx, false, "pod-a")
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("x"), 0o600); err == nil {
		t.Error("wrote to a share whose first matching permission is READ_ONLY")
	}
	e.unmount(0, id, target)
	if _, err := e.ctrl.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}

	// Another configuration: the controller restarts to take it, as a
	// changed Secret makes it.
	if err := os.WriteFile(e.conf, []byte(e.sim.ConfigINI("rwx", false)+`
[NetPermissions "nobody"]
ips = "*"
permissions = "NO_ACCESS"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = e.ctrlP.Stop()
	e.startController()
	id = e.create("pvc-rwx-nobody", 256<<20).GetVolumeId()
	_, err := e.mount(0, id, rwx, false, "pod-b")
	if err == nil || !strings.Contains(err.Error(), "net permissions") {
		t.Errorf("mounting a share that refuses everyone: %v, want the refusal explained", err)
	}
	e.unmount(0, id, filepath.Join(e.dir, "node-1", "pods", "pod-b"))
	if _, err := e.ctrl.DeleteVolume(e.ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
}

func wantCodeIs(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if codeOf(err) != code || !strings.Contains(fmt.Sprint(err), text) {
		t.Errorf("got %v, want %s saying %q", err, code, text)
	}
}
