package driver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vslm"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

func profile(id string) []types.BaseVirtualMachineProfileSpec {
	return []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: id}}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// realEnv is a controller and a node plugin on the embedded vCenter with
// its hypervisor: attach makes a loop device, stage formats and mounts it.
type realEnv struct {
	*env
	node *driver.Driver
	vm   sim.NodeVM
}

func newRealEnv(t *testing.T) *realEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mounts (CI runs as root)")
	}
	e := &realEnv{env: newEnvWith(t, sim.Options{NodeVMs: 1, Hypervisor: true})}
	e.vm = e.sim.NodeVMs()[0]
	var err error
	e.node, err = driver.NewDriver(driver.Options{Mode: driver.ModeNode, Version: "test", NodeID: e.vm.UUID, ByIDDir: e.vm.ByIDDir},
		nil, node.New(node.Options{DeviceWait: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// useStatic publishes, stages and publishes to a pod a volume the driver did
// not create, writes a file, and takes it all down again.
func (e *realEnv) useStatic(t *testing.T, id string) {
	t.Helper()
	e.usePublished(t, id, func(target string) {
		if err := os.WriteFile(filepath.Join(target, "hello"), []byte("static"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
}

// usePublished attaches the volume to the node VM, stages it and publishes
// it at a pod's target as kubelet would, hands the target to use, then
// unpublishes, unstages and detaches it.
func (e *realEnv) usePublished(t *testing.T, id string, use func(target string)) {
	t.Helper()
	ctx := context.Background()
	capability := mountRWO()[0]
	pub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: e.vm.UUID, VolumeCapability: capability})
	if err != nil {
		t.Fatalf("ControllerPublishVolume of %s: %v", id, err)
	}
	dir := t.TempDir()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	if err := os.Mkdir(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range []string{target, staging} {
			for unix.Unmount(p, 0) == nil {
			}
		}
	})
	if _, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging,
		VolumeCapability: capability, PublishContext: pub.GetPublishContext()}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	if _, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: capability, PublishContext: pub.GetPublishContext()}); err != nil {
		t.Fatalf("NodePublishVolume: %v", err)
	}
	use(target)
	if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: e.vm.UUID}); err != nil {
		t.Fatal(err)
	}
}

// TestStaticCNSVolume: a CNS volume made with govmomi (not by CreateVolume)
// is attached, staged and mounted through the driver.
func TestStaticCNSVolume(t *testing.T) {
	e := newRealEnv(t)
	vs := connectVSphere(t, e.sim)
	ctx := context.Background()
	ds := e.datastoreNamed(t, "vsanDatastore")
	task, err := vs.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{{
		Name:       "made-by-an-admin",
		VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		Datastores: []types.ManagedObjectReference{{Type: "Datastore", Value: ds.Ref}},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: 64},
		},
		Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cnstypes.CnsContainerCluster{
			ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: "another-cluster", VSphereUser: sim.DefaultUsername,
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
		t.Fatalf("CNS create: %v, %+v", err, res)
	}
	e.useStatic(t, res.GetCnsVolumeOperationResult().VolumeId.Id)
}

// TestStaticFirstClassDisk: a first-class disk that is not a CNS volume is
// registered with CNS on its first ControllerPublish, keeps its ID, and is
// used like any volume; an unknown disk ID stays NotFound.
func TestStaticFirstClassDisk(t *testing.T) {
	e := newRealEnv(t)
	vs := connectVSphere(t, e.sim)
	ctx := context.Background()
	ds := e.datastoreNamed(t, "silver-ds")
	dsRef := types.ManagedObjectReference{Type: "Datastore", Value: ds.Ref}
	task, err := vslm.NewObjectManager(vs.vim).CreateDisk(ctx, types.VslmCreateSpec{
		Name:         "legacy-disk",
		CapacityInMB: 96,
		BackingSpec: &types.VslmCreateSpecDiskFileBackingSpec{
			VslmCreateSpecBackingSpec: types.VslmCreateSpecBackingSpec{Datastore: dsRef},
			ProvisioningType:          string(types.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := r.Result.(types.VStorageObject).Config.Id.Id
	if _, err := e.d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id}); err == nil {
		t.Fatalf("disk %s is a CNS volume before its first use", id)
	}
	e.useStatic(t, id)
	got := vs.cnsVolume(t, id)
	if got.DatastoreUrl != ds.URL || got.BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb != 96 {
		t.Errorf("registered volume: on %s with %d MB, want %s with 96 MB", got.DatastoreUrl,
			got.BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb, ds.URL)
	}
	if got.Metadata.ContainerCluster.ClusterId != "test-cluster" {
		t.Errorf("registered volume belongs to cluster %q, want test-cluster", got.Metadata.ContainerCluster.ClusterId)
	}
	// Used again: no second registration.
	e.useStatic(t, id)

	_, err = e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "6c9a7f0e-1b2c-4d3e-8f40-123456789abc",
		NodeId: e.vm.UUID, VolumeCapability: mountRWO()[0]})
	wantCode(t, err, codes.NotFound, "6c9a7f0e-1b2c-4d3e-8f40-123456789abc")
}
