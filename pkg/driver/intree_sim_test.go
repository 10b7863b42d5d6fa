package driver_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"google.golang.org/grpc/codes"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// anotherController is a second controller process's driver: its own
// session and caches, nothing shared with e.d but vCenter.
func anotherController(t *testing.T, s *sim.Sim) *driver.Driver {
	t.Helper()
	return controllerWith(t, s, driver.Options{})
}

// controllerWith is another controller on s with opts (mode, version set).
func controllerWith(t *testing.T, s *sim.Sim, opts driver.Options) *driver.Driver {
	t.Helper()
	ctx := context.Background()
	vc, err := vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: sim.DefaultUsername, Password: sim.DefaultPassword,
		Thumbprint: s.Thumbprint(), ClusterID: "test-cluster",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close(context.Background()) })
	opts.Mode, opts.Version = driver.ModeController, "test"
	d, err := driver.NewDriver(opts, vc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestInTreeDefaultDatastore: csi-vsphere.conf's migration-datastore-url
// is where a translated in-tree StorageClass naming no datastore puts its
// disks, as the upstream driver reads it; a class naming one keeps its own.
func TestInTreeDefaultDatastore(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	silver := e.datastoreNamed(t, "silver-ds")
	d := controllerWith(t, e.sim, driver.Options{InTreeDatastoreURL: silver.URL})
	params := map[string]string{"csimigration": "true", "csi.storage.k8s.io/pv/name": "pvc-default-ds"}
	resp, err := d.CreateVolume(ctx, createReq("pvc-default-ds", 64<<20, params))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVolume().GetVolumeId(); got != "[silver-ds] kubevols/pvc-default-ds.vmdk" {
		t.Errorf("volume %q; want it on migration-datastore-url's silver-ds", got)
	}
	// Without the setting, placement takes the most free space elsewhere.
	resp, err = e.d.CreateVolume(ctx, createReq("pvc-any-ds", 64<<20, map[string]string{"csimigration": "true", "csi.storage.k8s.io/pv/name": "pvc-any-ds"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVolume().GetVolumeId(); strings.HasPrefix(got, "[silver-ds]") {
		t.Errorf("volume %q without migration-datastore-url: the test needs placement to pick another datastore", got)
	}
}

// inTreeDisk makes an in-tree style disk with data at its start, and
// returns its path, its data file and the file's inode.
func inTreeDisk(t *testing.T, s *sim.Sim, ds, name string, sizeMB int64, data string) (string, string, uint64) {
	t.Helper()
	path, err := s.AddInTreeDisk(ds, name, sizeMB)
	if err != nil {
		t.Fatal(err)
	}
	file, err := s.DatastoreFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(data), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, file, inode(t, file)
}

func inode(t *testing.T, file string) uint64 {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func readHead(t *testing.T, file string, n int) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// inTreeVolumes are the sim's CNS volumes registered from in-tree disks.
func inTreeVolumes(s *sim.Sim) []sim.VolumeState {
	var out []sim.VolumeState
	for _, v := range s.Volumes() {
		if strings.HasPrefix(v.Name, "intree-") {
			out = append(out, v)
		}
	}
	return out
}

// TestInTreeVolumeOfAnInTreePV: a PV of the in-tree plugin, whose volume ID
// Kubernetes makes from its volumePath, is registered with CNS on its first
// ControllerPublish, in place (same data file, same data), exactly once:
// another controller finds it by name; it attaches, detaches, attaches to
// another node, lists under its path, expands and is deleted with its disk.
func TestInTreeVolumeOfAnInTreePV(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	const data = "written by the in-tree plugin"
	path, file, ino := inTreeDisk(t, e.sim, "vsanDatastore", "kubernetes-dynamic-pvc-0001", 64, data)
	vms := e.sim.NodeVMs()
	capability := mountRWO()[0]
	publish := func(d *driver.Driver, node string) string {
		t.Helper()
		pub, err := d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: path, NodeId: node, VolumeCapability: capability})
		if err != nil {
			t.Fatalf("ControllerPublishVolume(%q): %v", path, err)
		}
		u := pub.GetPublishContext()[driver.PublishContextDiskUUID]
		if u == "" {
			t.Fatalf("no disk UUID in the publish context %v", pub.GetPublishContext())
		}
		return u
	}
	unpublish := func(d *driver.Driver, node string) {
		t.Helper()
		if _, err := d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: path, NodeId: node}); err != nil {
			t.Fatalf("ControllerUnpublishVolume: %v", err)
		}
	}

	// Before any use: not registered, and unpublishing it is success.
	if n := len(inTreeVolumes(e.sim)); n != 0 {
		t.Fatalf("%d in-tree volumes before use", n)
	}
	unpublish(e.d, vms[0].UUID)

	uuid := publish(e.d, vms[0].UUID)
	vols := inTreeVolumes(e.sim)
	if len(vols) != 1 || vols[0].VM != vms[0].Name {
		t.Fatalf("after the first publish: %+v; want one in-tree volume attached to %s", vols, vms[0].Name)
	}
	volID := vols[0].ID
	if got, _ := e.sim.VolumeFile(volID); got != file {
		t.Errorf("volume %s's data file is %s; want the in-tree disk's own %s (no copy, no move)", volID, got, file)
	}
	if inode(t, file) != ino || readHead(t, file, len(data)) != data {
		t.Errorf("the in-tree disk's data file changed")
	}

	// Another controller (a restart, a second replica): the same volume.
	other := anotherController(t, e.sim)
	if u := publish(other, vms[0].UUID); u != uuid {
		t.Errorf("the other controller's publish says disk %s; want %s", u, uuid)
	}
	if vols := inTreeVolumes(e.sim); len(vols) != 1 || vols[0].ID != volID {
		t.Fatalf("after the other controller's publish: %+v; want only %s", vols, volID)
	}
	unpublish(other, vms[0].UUID)
	publish(e.d, vms[1].UUID)

	list, err := e.d.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range list.GetEntries() {
		if en.GetVolume().GetVolumeId() == path {
			found = true
			if nodes := en.GetStatus().GetPublishedNodeIds(); len(nodes) != 1 || nodes[0] != vms[1].UUID {
				t.Errorf("ListVolumes: %s published on %v; want [%s]", path, nodes, vms[1].UUID)
			}
		}
		if en.GetVolume().GetVolumeId() == volID {
			t.Errorf("ListVolumes names the in-tree volume by its CNS ID %s; Kubernetes knows it as %s", volID, path)
		}
	}
	if !found {
		t.Errorf("ListVolumes has no entry %q: %v", path, list.GetEntries())
	}

	exp, err := e.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: path,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 128 << 20}, VolumeCapability: capability})
	if err != nil || exp.GetCapacityBytes() != 128<<20 {
		t.Fatalf("ControllerExpandVolume: %v, %v", exp, err)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != 128<<20 {
		t.Errorf("after expand the data file is %v (%v); want 128 MiB", st, err)
	}
	if readHead(t, file, len(data)) != data {
		t.Errorf("expand lost the data")
	}

	unpublish(e.d, vms[1].UUID)
	// Deleted by the controller that detached it (another one's picture of
	// the attachments follows vCenter's a moment later), then again by the
	// other: already gone is success.
	for i, d := range []*driver.Driver{e.d, other} {
		if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: path}); err != nil {
			t.Fatalf("DeleteVolume(%q) #%d: %v", path, i+1, err)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the disk's data file is still there after delete: %v", err)
	}
	if n := len(inTreeVolumes(e.sim)); n != 0 {
		t.Errorf("%d in-tree volumes after delete", n)
	}

	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "[vsanDatastore] kubevols/no-such-disk.vmdk",
		NodeId: vms[0].UUID, VolumeCapability: capability})
	wantCode(t, err, codes.NotFound, "no-such-disk.vmdk")
}

// TestInTreeStorageClass: the parameters Kubernetes translates from a
// StorageClass of kubernetes.io/vsphere-volume provision an in-tree style
// disk on the class's datastore, answered by its path (volume ID and
// initialvolumefilepath, which the provisioner puts in the in-tree PV);
// a retry, here and on another controller, makes nothing more; the path
// then expands and deletes the volume.
func TestInTreeStorageClass(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	params := map[string]string{
		"csimigration": "true", "datastore-migrationparam": "silver-ds", "diskformat-migrationparam": "thin",
		"storagepolicyname": "Silver", "csi.storage.k8s.io/fstype": "ext4",
		"csi.storage.k8s.io/pvc/name": "data-web-0", "csi.storage.k8s.io/pvc/namespace": "default", "csi.storage.k8s.io/pv/name": "pvc-7",
	}
	const want = "[silver-ds] kubevols/pvc-7.vmdk"
	create := func(d *driver.Driver) *csi.Volume {
		t.Helper()
		resp, err := d.CreateVolume(ctx, createReq("pvc-7", 96<<20, params))
		if err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
		v := resp.GetVolume()
		if v.GetVolumeId() != want || v.GetVolumeContext()["initialvolumefilepath"] != want || v.GetCapacityBytes() != 96<<20 {
			t.Fatalf("CreateVolume answered %v; want volume ID and initialvolumefilepath %q, 96 MiB", v, want)
		}
		return v
	}
	create(e.d)
	create(e.d)
	create(anotherController(t, e.sim))
	vols := inTreeVolumes(e.sim)
	if len(vols) != 1 {
		t.Fatalf("in-tree volumes: %+v; want one", vols)
	}
	file, err := e.sim.DatastoreFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.sim.VolumeFile(vols[0].ID); got != file {
		t.Errorf("the volume's data file is %s; want %s", got, file)
	}

	vm := e.sim.NodeVMs()[0]
	pub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: want, NodeId: vm.UUID, VolumeCapability: mountRWO()[0]})
	if err != nil || pub.GetPublishContext()[driver.PublishContextDiskUUID] == "" {
		t.Fatalf("ControllerPublishVolume: %v, %v", pub, err)
	}
	if _, err := e.d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: want,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 192 << 20}}); err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != 192<<20 {
		t.Errorf("after expand the data file is %v (%v); want 192 MiB", st, err)
	}
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: want})
	wantCode(t, err, codes.FailedPrecondition, "attached")
	if _, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: want, NodeId: vm.UUID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: want}); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the disk is still there after delete: %v", err)
	}
	if n := len(inTreeVolumes(e.sim)); n != 0 {
		t.Errorf("%d in-tree volumes after delete", n)
	}
}

// TestInTreeStorageClassRefusals: what a translated in-tree StorageClass
// may ask that the driver can't do is refused with InvalidArgument naming
// the parameter, before anything is made.
func TestInTreeStorageClassRefusals(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	for _, c := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"csimigration": "true", "hostfailurestotolerate-migrationparam": "1"}, "hostfailurestotolerate"},
		{map[string]string{"csimigration": "true", "objectspacereservation-migrationparam": "100"}, "storage policy"},
		{map[string]string{"csimigration": "true", "iopslimit-migrationparam": "100"}, "iopslimit"},
		{map[string]string{"csimigration": "true", "diskformat-migrationparam": "sparse"}, "diskformat"},
		{map[string]string{"csimigration": "true", "datastore-migrationparam": "no-such-ds"}, "no-such-ds"},
		{map[string]string{"csimigration": "true", "datastore-migrationparam": "silver-ds", "storagepolicyname": "Gold"}, "silver-ds"},
		{map[string]string{"datastore-migrationparam": "silver-ds"}, "csimigration=true"},
		{map[string]string{"csimigration": "yes"}, "csimigration"},
	} {
		_, err := e.d.CreateVolume(ctx, createReq("pvc-refused", 64<<20, c.params))
		wantCode(t, err, codes.InvalidArgument, c.want)
	}
	if n := len(e.sim.Volumes()); n != 0 {
		t.Errorf("%d volumes made by refused requests", n)
	}
}

// TestInTreeDiskDataThroughNodeStage: an in-tree disk that holds an ext4
// filesystem with a file, as the in-tree plugin left it, is attached by its
// path, staged (mounted, never formatted: its filesystem is there) and
// published; the pod reads the file the in-tree plugin's pod wrote.
func TestInTreeDiskDataThroughNodeStage(t *testing.T) {
	e := newRealEnv(t)
	path, err := e.sim.AddInTreeDisk("vsanDatastore", "kubernetes-dynamic-pvc-0002", 64)
	if err != nil {
		t.Fatal(err)
	}
	file, err := e.sim.DatastoreFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "index.html"), []byte("kept across the switch"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, file).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d on the in-tree disk: %v: %s", err, out)
	}
	e.usePublished(t, path, func(target string) {
		got, err := os.ReadFile(filepath.Join(target, "index.html"))
		if err != nil || string(got) != "kept across the switch" {
			t.Fatalf("the in-tree disk's file through the node plugin: %q, %v", got, err)
		}
	})
}

// TestInTreeDiskRegisteredByTheUpstreamDriver: a disk the upstream driver
// registered under a name of its own (a random UUID) is the volume a path
// resolves to: CNS's "already registered" names it; no second volume.
func TestInTreeDiskRegisteredByTheUpstreamDriver(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	path, _, _ := inTreeDisk(t, e.sim, "silver-ds", "kubernetes-dynamic-pvc-0003", 32, "x")
	vs := connectVSphere(t, e.sim)
	u := "https://" + e.sim.Host() + "/folder/kubevols/kubernetes-dynamic-pvc-0003.vmdk?dcPath=DC0&dsName=silver-ds"
	task, err := vs.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{{
		Name: "3f1e9a52-7c2b-4d1e-9f00-upstream", VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{BackingDiskUrlPath: u},
		Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cnstypes.CnsContainerCluster{
			ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: "test-cluster", VSphereUser: sim.DefaultUsername,
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cns.GetTaskResult(ctx, info)
	if err != nil || res.GetCnsVolumeOperationResult().Fault != nil {
		t.Fatalf("registration as the upstream driver does it: %v, %+v", err, res)
	}
	upstreamID := res.GetCnsVolumeOperationResult().VolumeId.Id
	vm := e.sim.NodeVMs()[0]
	if _, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: path, NodeId: vm.UUID, VolumeCapability: mountRWO()[0]}); err != nil {
		t.Fatalf("ControllerPublishVolume(%q): %v", path, err)
	}
	vols := e.sim.Volumes()
	if len(vols) != 1 || vols[0].ID != upstreamID || vols[0].VM != vm.Name {
		t.Fatalf("volumes %+v; want only %s, attached to %s", vols, upstreamID, vm.Name)
	}
}

// TestCreateAfterInTreeRegistration: a datastore whose first CNS volume
// came from an in-tree disk registered in place still takes new volumes
// (the embedded vCenter made the datastore's disk catalog without its fcd
// directory, and every later create there was FileNotFound: found by make
// e2e, TestHelm after TestInTreePV).
func TestCreateAfterInTreeRegistration(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	silver := e.datastoreNamed(t, "silver-ds")
	if _, err := e.d.CreateVolume(ctx, createReq("pvc-intree-first", 64<<20, map[string]string{
		"csimigration": "true", "datastore-migrationparam": "silver-ds", "csi.storage.k8s.io/pv/name": "pvc-intree-first"})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.CreateVolume(ctx, createReq("pvc-after-intree", 64<<20, map[string]string{"datastoreurl": silver.URL})); err != nil {
		t.Fatalf("a volume on the same datastore after the in-tree one: %v", err)
	}
}
