package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vslm"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStaticPV follows deploy/examples/static-pv.yaml: a first-class disk
// made in vSphere beforehand (not a CNS volume) becomes the volumeHandle of
// a PV bound to a claim; a pod mounts it (the blank disk gets a filesystem),
// the driver registers it with CNS under its own ID on first attach, and with
// Retain the disk and its data outlive the claim.
func TestStaticPV(t *testing.T) {
	t.Parallel()
	vc := connectVCenter(t)
	const name = "static-vmdk" // the example's PV and claim
	ctx := t.Context()
	// The node is in zone-b: the disk goes to that zone's datastore.
	ds, err := find.NewFinder(vc.vim).Datastore(ctx, zoneDatastore)
	if err != nil {
		t.Fatalf("datastore %s: %v", zoneDatastore, err)
	}
	task, err := vslm.NewObjectManager(vc.vim).CreateDisk(ctx, types.VslmCreateSpec{
		Name:         "legacy-disk",
		CapacityInMB: 5 * 1024,
		BackingSpec: &types.VslmCreateSpecDiskFileBackingSpec{
			VslmCreateSpecBackingSpec: types.VslmCreateSpecBackingSpec{Datastore: ds.Reference()},
			ProvisioningType:          string(types.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatalf("create first-class disk: %v", err)
	}
	id := res.Result.(types.VStorageObject).Config.Id.Id
	if v, err := vc.volume(ctx, id); err != nil || v != nil {
		t.Fatalf("first-class disk %s is a CNS volume before its first use (err %v)", id, err)
	}
	t.Logf("first-class disk %s on %s", id, zoneDatastore)

	// The example's PV and claim with this disk's ID (its pod needs a
	// registry image; the test's pod stands in for it).
	data, err := os.ReadFile(filepath.Join(env.root, "deploy/examples/static-pv.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	if len(docs) < 2 || !strings.Contains(docs[0], "kind: PersistentVolume\n") || !strings.Contains(docs[1], "kind: PersistentVolumeClaim") {
		t.Fatalf("deploy/examples/static-pv.yaml: want a PV and a claim first")
	}
	var pvDoc []string
	for _, l := range strings.Split(docs[0], "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "volumeHandle:") {
			l = l[:strings.Index(l, "volumeHandle:")] + "volumeHandle: " + id
		}
		pvDoc = append(pvDoc, l)
	}
	t.Cleanup(func() {
		_ = env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = env.kube.CoreV1().PersistentVolumes().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	kubectlApply(t, strings.Join(pvDoc, "\n")+"\n---\n"+docs[1])
	pv := waitBound(t, name)
	if pv.Name != name || pv.Spec.CSI.VolumeHandle != id {
		t.Fatalf("claim %s bound to PV %s (handle %s), want %s (%s)", name, pv.Name, pv.Spec.CSI.VolumeHandle, name, id)
	}

	cleanupPod(t, "static-writer")
	runPod(t, podObject("static-writer", name, `set -e; grep -q " /data ext4 " /proc/mounts; echo static > /data/f; sync`, false))
	deletePod(t, "static-writer", name)
	v, err := vc.volume(ctx, id)
	if err != nil || v == nil {
		t.Fatalf("disk %s not registered with CNS after its first use (err %v)", id, err)
	}
	if v.VolumeId.Id != id || v.VolumeType != string(cnstypes.CnsVolumeTypeBlock) {
		t.Errorf("CNS volume %s (%s), want the disk's own ID %s, a block volume", v.VolumeId.Id, v.VolumeType, id)
	}
	t.Logf("disk %s registered with CNS as volume %s (%s)", id, v.VolumeId.Id, v.Name)

	// Retain: the claim goes, the PV is Released, the disk and its data stay.
	if err := env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "PV "+name+" Released", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Status.Phase == corev1.VolumeReleased, "phase " + string(p.Status.Phase), nil
	})
	if err := env.kube.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, err := vc.volume(ctx, id); err != nil || v == nil {
		t.Errorf("Retain: CNS volume %s gone with its claim and PV (err %v)", id, err)
	}
	if f := dataFiles(t, id); len(f) == 0 {
		t.Errorf("Retain: the data file of disk %s is gone", id)
	}

	// The admin deletes the disk in vSphere when done with it.
	dtask, err := vc.cns.DeleteVolume(ctx, []cnstypes.CnsVolumeId{{Id: id}}, true)
	if err == nil {
		_, err = dtask.WaitForResult(ctx)
	}
	if err != nil {
		t.Errorf("deleting CNS volume %s: %v", id, err)
	}
}
