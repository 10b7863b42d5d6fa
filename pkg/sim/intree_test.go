package sim

import (
	"context"
	"net/url"
	"os"
	"testing"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
)

// registerByURL registers the disk at a datastore path with
// CnsCreateVolume and BackingDiskUrlPath, as a client of vCenter does.
func registerByURL(t *testing.T, s *Sim, c *clients, ds, file string) cnstypes.BaseCnsVolumeOperationResult {
	t.Helper()
	ctx := context.Background()
	u := "https://" + s.Host() + "/folder/" + file + "?dcPath=" + url.QueryEscape(s.inv.dcName) + "&dsName=" + url.QueryEscape(ds)
	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{{
		Name:                 "intree-test",
		VolumeType:           string(cnstypes.CnsVolumeTypeBlock),
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{BackingDiskUrlPath: u},
		Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cnstypes.CnsContainerCluster{
			ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: "c1", VSphereUser: DefaultUsername,
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
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestInTreeDiskRegisteredInPlace: CnsCreateVolume with BackingDiskUrlPath
// makes an in-tree VMDK a CNS volume whose data file is the disk's own,
// with its size and data; registering it again names the volume
// (CnsAlreadyRegisteredFault); a path with no disk is NotFound; the volume
// and its files survive a restart.
func TestInTreeDiskRegisteredInPlace(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	path, err := s.AddInTreeDisk("silver-ds", "kubernetes-dynamic-pvc-9", 32)
	if err != nil {
		t.Fatal(err)
	}
	file, err := s.DatastoreFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("in-tree"), 0o600); err != nil { // shorter than the disk: registration gives it its size
		t.Fatal(err)
	}
	res := registerByURL(t, s, c, "silver-ds", "kubevols/kubernetes-dynamic-pvc-9.vmdk").GetCnsVolumeOperationResult()
	if res.Fault != nil {
		t.Fatalf("register: %+v", res.Fault)
	}
	id := res.VolumeId.Id
	if got, _ := s.VolumeFile(id); got != file {
		t.Fatalf("volume %s's data file is %s; want the disk's own %s", id, got, file)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != 32*mib {
		t.Errorf("data file after registration: %v, %v; want 32 MiB", st, err)
	}
	again := registerByURL(t, s, c, "silver-ds", "kubevols/kubernetes-dynamic-pvc-9.vmdk").GetCnsVolumeOperationResult()
	if f, ok := again.Fault.GetLocalizedMethodFault().Fault.(*cnstypes.CnsAlreadyRegisteredFault); again.Fault == nil || !ok || f.VolumeId.Id != id {
		t.Errorf("second registration: %+v; want CnsAlreadyRegisteredFault naming %s", again.Fault, id)
	}
	missing := registerByURL(t, s, c, "silver-ds", "kubevols/nothing-here.vmdk").GetCnsVolumeOperationResult()
	if missing.Fault == nil || !containsAll(missing.Fault.LocalizedMessage, "was not found") {
		t.Errorf("registration of a missing disk: %+v; want a NotFound fault", missing.Fault)
	}

	s = restart(t, s, TasksAbandoned)
	if got, ok := s.VolumeFile(id); !ok || got != file {
		t.Fatalf("after a restart volume %s's data file is %q (%v); want %s", id, got, ok, file)
	}
	if b, err := os.ReadFile(file); err != nil || string(b[:7]) != "in-tree" {
		t.Errorf("after a restart the disk holds %q, %v", b[:7], err)
	}
}
