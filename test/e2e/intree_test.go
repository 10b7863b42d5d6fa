package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// In-tree vSphere volumes through Kubernetes' CSI migration: a PV of the
// in-tree plugin (vsphereVolume.volumePath) and a StorageClass of
// kubernetes.io/vsphere-volume, which Kubernetes translates for
// csi.vsphere.vmware.com (docs/SWITCHING.md).

// inTreeDataFile finds the embedded vCenter's data file of the in-tree
// disk kubevols/<name>.vmdk: <datastore dir>/kubevols/<name>-flat.vmdk.
func inTreeDataFile(t *testing.T, name string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(filepath.Join(env.dir, "vcenter"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name+"-flat.vmdk" && filepath.Base(filepath.Dir(p)) == "kubevols" {
			found = p
		}
		return nil
	})
	return found
}

// TestInTreePV: a disk the in-tree plugin made ("[ds] kubevols/x.vmdk",
// VirtualDiskManager, not a CNS volume) with an ext4 filesystem and data is
// the volumePath of a vsphereVolume PV; a pod reads the data and writes
// more through this driver (Kubernetes translates the PV; the driver
// registers the disk with CNS in place on first attach); after the pod is
// gone and the disk detached, another pod finds both files.
func TestInTreePV(t *testing.T) {
	t.Parallel()
	const name = "legacy-intree"
	flat := inTreeDiskWithData(t, zoneDatastore, name)
	pvName, claim := "intree-pv", "intree-claim"
	inTreeClaim(t, pvName, claim, fmt.Sprintf("[%s] kubevols/%s.vmdk", zoneDatastore, name))

	runPod(t, podObject("intree-a", claim, `set -e
grep -q "written by the in-tree plugin's pod" /data/old
echo "written through csi.vsphere.vmware.com" > /data/new
sync`, false))
	cleanupPod(t, "intree-a")
	deletePod(t, "intree-a", pvName)

	// Registered in place: the disk's data file is the one made above.
	if files := inTreeDataFile(t, name); files != flat {
		t.Errorf("the disk's data file is now %q, was %q: moved or copied", files, flat)
	}
	runPod(t, podObject("intree-b", claim, `set -e
grep -q "written by the in-tree plugin's pod" /data/old
grep -q "written through csi.vsphere.vmware.com" /data/new`, false))
	cleanupPod(t, "intree-b")
	deletePod(t, "intree-b", pvName)
	deletePVC(t, claim, "")
	_ = env.kube.CoreV1().PersistentVolumes().Delete(t.Context(), pvName, metav1.DeleteOptions{})
}

// inTreeDiskWithData makes a disk as the in-tree plugin did ("[ds]
// kubevols/<name>.vmdk", VirtualDiskManager, not a CNS volume, 1 GiB thin)
// with an ext4 filesystem holding /old, and returns its data file.
func inTreeDiskWithData(t *testing.T, datastore, name string) string {
	t.Helper()
	vc := connectVCenter(t)
	ctx := t.Context()
	path := fmt.Sprintf("[%s] kubevols/%s.vmdk", datastore, name)
	dc, err := find.NewFinder(vc.vim).DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := object.NewFileManager(vc.vim).MakeDirectory(ctx, fmt.Sprintf("[%s] kubevols", datastore), dc, true); err != nil {
		t.Fatalf("make kubevols: %v", err)
	}
	task, err := object.NewVirtualDiskManager(vc.vim).CreateVirtualDisk(ctx, path, dc, &types.FileBackedVirtualDiskSpec{
		VirtualDiskSpec: types.VirtualDiskSpec{DiskType: string(types.VirtualDiskTypeThin), AdapterType: string(types.VirtualDiskAdapterTypeLsiLogic)},
		CapacityKb:      1 << 20, // 1 GiB
	})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		t.Fatalf("create the in-tree disk %s: %v", path, err)
	}
	// Its filesystem and data, as a pod of the in-tree plugin left them.
	flat := inTreeDataFile(t, name)
	if flat == "" {
		t.Fatalf("no data file of %s under %s", path, filepath.Join(env.dir, "vcenter"))
	}
	// govmomi's simulator leaves a new thin disk's data file empty where a
	// datastore shows its full size (sparse): give it its size first.
	if err := os.Truncate(flat, 1<<30); err != nil {
		t.Fatal(err)
	}
	writeExt4(t, flat, "old", "written by the in-tree plugin's pod")
	return flat
}

// inTreeClaim makes the in-tree plugin's PV of the disk at path (Retain)
// and a claim bound to it, both gone when the test ends.
func inTreeClaim(t *testing.T, pvName, claim, path string) {
	t.Helper()
	empty := ""
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              empty,
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				VsphereVolume: &corev1.VsphereVirtualDiskVolumeSource{VolumePath: path, FSType: "ext4"},
			},
		},
	}
	if _, err := env.kube.CoreV1().PersistentVolumes().Create(t.Context(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the in-tree PV: %v", err)
	}
	t.Cleanup(func() {
		_ = env.kube.CoreV1().PersistentVolumes().Delete(context.Background(), pvName, metav1.DeleteOptions{})
	})
	pvc := pvcObject(claim, "", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem)
	pvc.Spec.StorageClassName = &empty
	pvc.Spec.VolumeName = pvName
	createPVC(t, pvc)
	cleanupPVC(t, claim)
	waitBound(t, claim)
}

// writeExt4 makes an ext4 filesystem on the disk's data file and writes
// one file in it, through a loop device (the test runs as root, on the
// machine that holds the embedded vCenter's datastores).
func writeExt4(t *testing.T, flat, file, content string) {
	t.Helper()
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("mkfs.ext4", "-q", "-F", flat)
	mnt := t.TempDir()
	dev := run("losetup", "-f", "--show", flat)
	defer run("losetup", "-d", dev)
	run("mount", dev, mnt)
	if err := os.WriteFile(filepath.Join(mnt, file), []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("umount", mnt)
}

// TestInTreeStorageClass: a StorageClass of the in-tree plugin
// (kubernetes.io/vsphere-volume, diskformat thin, a datastore) provisions
// through this driver: the PV Kubernetes records is in-tree
// (vsphereVolume, "[datastore] kubevols/..."), the disk is where the class
// says, the claim grows, and deleting it deletes the disk.
func TestInTreeStorageClass(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const class = "intree-thin"
	expand := true
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: class},
		Provisioner:          "kubernetes.io/vsphere-volume",
		Parameters:           map[string]string{"diskformat": "thin", "datastore": zoneDatastore},
		AllowVolumeExpansion: &expand,
	}
	if _, err := env.kube.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create the in-tree StorageClass: %v", err)
	}
	t.Cleanup(func() {
		_ = env.kube.StorageV1().StorageClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})

	const name = "intree-sts"
	claims := createStatefulSetOf(t, statefulSet(name, 1, class, `set -e
echo kept > /data/file; sync; touch /tmp/ready; sleep 3600`))
	pv := waitBound(t, claims[0])
	if pv.Spec.VsphereVolume == nil || !strings.HasPrefix(pv.Spec.VsphereVolume.VolumePath, "["+zoneDatastore+"] kubevols/") {
		t.Fatalf("PV %s: %+v; want an in-tree vsphereVolume on %s under kubevols/", pv.Name, pv.Spec.PersistentVolumeSource, zoneDatastore)
	}
	diskName := strings.TrimSuffix(filepath.Base(pv.Spec.VsphereVolume.VolumePath), ".vmdk")
	flat := inTreeDataFile(t, diskName)
	if flat == "" {
		t.Fatalf("no data file of %s", pv.Spec.VsphereVolume.VolumePath)
	}
	waitRunning(t, name+"-0")

	// Grow the claim: the disk grows (the filesystem at the next stage,
	// or online where the node may).
	c, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claims[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Update(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("expand the claim: %v", err)
	}
	eventually(t, 3*time.Minute, "the in-tree disk grown to 2Gi", func(ctx context.Context) (bool, string, error) {
		st, err := os.Stat(flat)
		if err != nil {
			return false, "", err
		}
		p, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		size := p.Spec.Capacity[corev1.ResourceStorage]
		return st.Size() >= 2<<30 && size.Cmp(resource.MustParse("2Gi")) >= 0,
			fmt.Sprintf("data file %d bytes, PV %s", st.Size(), size.String()), nil
	})

	deleteStatefulSet(t, name, claims, []string{pv.Name}, 2*time.Minute)
	eventually(t, time.Minute, "the in-tree disk deleted with its claim", func(context.Context) (bool, string, error) {
		_, err := os.Stat(flat)
		return os.IsNotExist(err), fmt.Sprintf("%s: %v", flat, err), nil
	})
}
