package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const gib = int64(1) << 30

// TestExpansion: an xfs claim mounted by a running pod grows from 1Gi to
// 2Gi online: the claim's status.capacity becomes 2Gi and the filesystem,
// seen both on the node (the pod's volume mount) and by df inside the pod,
// grows without restarting the pod.
func TestExpansion(t *testing.T) {
	t.Parallel()
	const claim, podName = "e2e-expand", "e2e-expand"
	allow := true
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: "e2e-expandable-sc"},
		Provisioner:          driverName,
		Parameters:           map[string]string{"storagepolicyname": "Gold", "csi.storage.k8s.io/fstype": "xfs"},
		AllowVolumeExpansion: &allow,
	}
	createStorageClass(t, sc)
	createPVC(t, pvcObject(claim, sc.Name, "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	pv := waitBound(t, claim)
	if pv.Spec.CSI == nil || pv.Spec.CSI.FSType != "xfs" {
		t.Fatalf("PV %s is not an xfs CSI volume: %+v", pv.Name, pv.Spec.PersistentVolumeSource)
	}
	t.Logf("PV %s: CNS volume %s, %s, xfs", pv.Name, pv.Spec.CSI.VolumeHandle, pv.Spec.Capacity.Storage())

	// The pod keeps running and reports /data's size (KiB) every second.
	cleanupPod(t, podName)
	pod := podObject(podName, claim, `set -e; grep -q " /data xfs " /proc/mounts
while :; do echo "size-kib $(df -kP /data | awk 'NR==2{print $2}')"; sleep 1; done`, false)
	created, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", podName, err)
	}
	waitRunning(t, podName)
	mount := filepath.Join(env.cluster.KubeletDir, "pods", string(created.UID), "volumes/kubernetes.io~csi", pv.Name, "mount")
	before, err := fsSize(mount)
	if err != nil {
		t.Fatalf("statfs of the pod's volume mount on the node: %v", err)
	}
	if before > gib {
		t.Fatalf("filesystem at %s is %d bytes before the expansion, want at most 1Gi", mount, before)
	}
	var inPod int64
	eventually(t, time.Minute, "the pod to report /data's size", func(ctx context.Context) (bool, string, error) {
		kib, state, err := podReportedKiB(created)
		inPod = kib
		return err == nil && kib > 0, state, err
	})
	t.Logf("before: filesystem %d MiB on the node (%s), df in the pod %d MiB", before>>20, mount, inPod>>10)

	patch := `{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Patch(t.Context(), claim, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch PVC %s to 2Gi: %v", claim, err)
	}
	t.Logf("patched PVC %s: requests 2Gi", claim)
	want := resource.MustParse("2Gi")
	eventually(t, 3*time.Minute, "PVC "+claim+" status.capacity 2Gi", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got := p.Status.Capacity[corev1.ResourceStorage]
		return got.Cmp(want) == 0, fmt.Sprintf("capacity %s; allocated %v; resize status %v; conditions %s; events: %s",
			got.String(), p.Status.AllocatedResources, p.Status.AllocatedResourceStatuses, pvcConditions(p),
			eventsOf(ctx, "PersistentVolumeClaim", claim)), nil
	})
	eventually(t, time.Minute, "PV "+pv.Name+" capacity 2Gi", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Spec.Capacity.Storage().Cmp(want) == 0, "capacity " + p.Spec.Capacity.Storage().String(), nil
	})
	var after int64
	eventually(t, time.Minute, "the filesystem on the node to exceed 1.5Gi", func(ctx context.Context) (bool, string, error) {
		after, err = fsSize(mount)
		return err == nil && after > 3*gib/2, fmt.Sprintf("%d bytes", after), err
	})
	eventually(t, time.Minute, "df inside the pod to exceed 1.5Gi", func(ctx context.Context) (bool, string, error) {
		kib, state, err := podReportedKiB(created)
		inPod = kib
		return err == nil && kib<<10 > 3*gib/2, state, err
	})
	p, err := env.kube.CoreV1().Pods(ns).Get(t.Context(), podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("pod %s did not keep running through the expansion: %s", podName, describePod(t.Context(), p))
	}
	t.Logf("after: filesystem %d MiB on the node, df in the pod %d MiB; the pod kept running", after>>20, inPod>>10)

	deletePod(t, podName, pv.Name)
	deletePVC(t, claim, pv.Name)
}

// TestVolumeAttributesClass: a claim created with VolumeAttributesClass
// silver gets a Silver volume; switching the claim to gold changes the CNS
// volume's storage policy to Gold in place.
func TestVolumeAttributesClass(t *testing.T) {
	t.Parallel()
	vc := connectVCenter(t)
	resources, err := env.kube.Discovery().ServerResourcesForGroupVersion("storage.k8s.io/v1")
	if err != nil {
		t.Fatalf("discovery of storage.k8s.io/v1: %v", err)
	}
	served := false
	for _, r := range resources.APIResources {
		served = served || r.Name == "volumeattributesclasses"
	}
	if !served {
		t.Fatalf("the API server does not serve storage.k8s.io/v1 volumeattributesclasses (GA and on by default in 1.34)")
	}
	t.Logf("the API server serves storage.k8s.io/v1 VolumeAttributesClass")

	const claim = "e2e-vac"
	for _, v := range []struct{ name, policy string }{{"silver", "Silver"}, {"gold", "Gold"}} {
		vac := &storagev1.VolumeAttributesClass{
			ObjectMeta: metav1.ObjectMeta{Name: v.name},
			DriverName: driverName,
			Parameters: map[string]string{"storagepolicyname": v.policy},
		}
		if _, err := env.kube.StorageV1().VolumeAttributesClasses().Create(t.Context(), vac, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create VolumeAttributesClass %s: %v", v.name, err)
		}
		t.Cleanup(func() {
			_ = env.kube.StorageV1().VolumeAttributesClasses().Delete(context.Background(), vac.Name, metav1.DeleteOptions{})
		})
	}
	immediate := storagev1.VolumeBindingImmediate
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "e2e-silver-sc"},
		Provisioner:       driverName,
		Parameters:        map[string]string{"storagepolicyname": "Silver"},
		VolumeBindingMode: &immediate,
	}
	createStorageClass(t, sc)
	silverID, goldID := vc.policyID(t, "Silver"), vc.policyID(t, "Gold")
	t.Logf("storage policies: Silver %s, Gold %s", silverID, goldID)

	pvc := pvcObject(claim, sc.Name, "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem)
	silver := "silver"
	pvc.Spec.VolumeAttributesClassName = &silver
	createPVC(t, pvc)
	pv := waitBound(t, claim)
	id := pv.Spec.CSI.VolumeHandle
	waitVAC(t, claim, pv.Name, "silver")
	waitPolicy(t, vc, id, "Silver", silverID)

	patch := `{"spec":{"volumeAttributesClassName":"gold"}}`
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Patch(t.Context(), claim, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch PVC %s to VolumeAttributesClass gold: %v", claim, err)
	}
	t.Logf("patched PVC %s: volumeAttributesClassName gold", claim)
	waitVAC(t, claim, pv.Name, "gold")
	waitPolicy(t, vc, id, "Gold", goldID)

	deletePVC(t, claim, pv.Name)
}

// waitVAC waits for the claim's status.currentVolumeAttributesClassName and
// its PV's spec.volumeAttributesClassName to be class, with no modification
// in progress.
func waitVAC(t *testing.T, claim, pv, class string) {
	t.Helper()
	eventually(t, 2*time.Minute, "PVC "+claim+" currentVolumeAttributesClassName "+class, func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		cur, status := "<nil>", "<nil>"
		if p.Status.CurrentVolumeAttributesClassName != nil {
			cur = *p.Status.CurrentVolumeAttributesClassName
		}
		if m := p.Status.ModifyVolumeStatus; m != nil {
			status = fmt.Sprintf("%s (target %s)", m.Status, m.TargetVolumeAttributesClassName)
		}
		return cur == class && p.Status.ModifyVolumeStatus == nil,
			fmt.Sprintf("current %s; modifyVolumeStatus %s; conditions %s; events: %s", cur, status, pvcConditions(p),
				eventsOf(ctx, "PersistentVolumeClaim", claim)), nil
	})
	eventually(t, time.Minute, "PV "+pv+" volumeAttributesClassName "+class, func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Spec.VolumeAttributesClassName == nil {
			return false, "unset", nil
		}
		return *p.Spec.VolumeAttributesClassName == class, *p.Spec.VolumeAttributesClassName, nil
	})
}

// waitPolicy waits for CNS to report the volume with the policy's ID.
func waitPolicy(t *testing.T, vc *vcenter, id, policy, policyID string) {
	t.Helper()
	eventually(t, time.Minute, "CNS volume "+id+" with storage policy "+policy+" ("+policyID+")", func(ctx context.Context) (bool, string, error) {
		v, err := vc.volume(ctx, id)
		if err != nil {
			return false, "", err
		}
		if v == nil {
			return false, "CNS does not know the volume", nil
		}
		return v.StoragePolicyId == policyID, "policy ID " + v.StoragePolicyId, nil
	})
}

func createStorageClass(t *testing.T, sc *storagev1.StorageClass) {
	t.Helper()
	if _, err := env.kube.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StorageClass %s: %v", sc.Name, err)
	}
	t.Cleanup(func() {
		_ = env.kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
}

func pvcConditions(p *corev1.PersistentVolumeClaim) string {
	var out []string
	for _, c := range p.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Message))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// waitRunning waits until the pod's container is running; a container that
// exits fails the test with its output and the events.
func waitRunning(t *testing.T, name string) {
	t.Helper()
	eventually(t, 3*time.Minute, "pod "+name+" running", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		state := describePod(ctx, p)
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			t.Fatalf("pod %s exited: %s", name, state)
		}
		running := len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Running != nil
		return running, state, nil
	})
}

// fsSize is the size of the filesystem mounted at path, in bytes.
func fsSize(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * st.Bsize, nil
}

// podReportedKiB reads the last "size-kib N" line the pod wrote to its log
// (kubelet's podLogsDir, $E2E_DIR/pod-logs/<ns>_<pod>_<uid>/<container>/).
func podReportedKiB(p *corev1.Pod) (int64, string, error) {
	files, err := filepath.Glob(filepath.Join(env.cluster.PodLogs, fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID), "main", "*.log"))
	if err != nil || len(files) == 0 {
		return 0, "no log file yet", err
	}
	data, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		return 0, "", err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, after, ok := strings.Cut(lines[i], "size-kib "); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(after), 10, 64)
			if err != nil {
				return 0, "", fmt.Errorf("log line %q: %w", lines[i], err)
			}
			return kib, fmt.Sprintf("the pod reports %d KiB", kib), nil
		}
	}
	return 0, "last log lines: " + strings.Join(lines[max(0, len(lines)-3):], " | "), nil
}
