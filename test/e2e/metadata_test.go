package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cnsEntities is what CNS holds of a volume's Kubernetes entities, as the
// vSphere Client's Container Volumes view shows them: "KIND ns/name
// labels" lines, sorted (labels as k=v,k=v; pods refer to their claim).
func cnsEntities(ctx context.Context, vc *vcenter, id string) ([]string, error) {
	v, err := vc.volume(ctx, id)
	if err != nil || v == nil {
		return nil, err
	}
	var out []string
	for _, em := range v.Metadata.EntityMetadata {
		k, ok := em.(*cnstypes.CnsKubernetesEntityMetadata)
		if !ok {
			continue
		}
		var kv []string
		for _, l := range k.Labels {
			kv = append(kv, l.Key+"="+l.Value)
		}
		slices.Sort(kv)
		line := strings.TrimSpace(k.EntityType + " " + k.Namespace + "/" + k.EntityName + " " + strings.Join(kv, ","))
		for _, r := range k.ReferredEntity {
			line += " -> " + r.Namespace + "/" + r.EntityName
		}
		out = append(out, line)
	}
	slices.Sort(out)
	return out, nil
}

func waitCNS(t *testing.T, vc *vcenter, timeout time.Duration, what, id string, want ...string) {
	t.Helper()
	slices.Sort(want)
	eventually(t, timeout, what, func(ctx context.Context) (bool, string, error) {
		got, err := cnsEntities(ctx, vc, id)
		return slices.Equal(got, want), fmt.Sprintf("CNS holds %q, want %q", got, want), err
	})
}

// TestMetadataInCNS: what a vSphere admin sees of the cluster's volumes in
// CNS follows Kubernetes: the seed's claim with its labels and its pod, a
// StatefulSet's pods; a label change within 10 s; a deleted pod gone; a PV
// deleted by hand with Retain reported as an orphan (by the controller and
// by `vsphere-csi orphans`), its disk kept.
func TestMetadataInCNS(t *testing.T) {
	t.Parallel()
	vc := connectVCenter(t)
	const claim = "e2e-meta"
	pvc := pvcObject(claim, "gold-sc", "5Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem)
	pvc.Labels = map[string]string{"app": "meta", "tier": "gold"}
	createPVC(t, pvc)
	pv := waitBound(t, claim)
	id := pv.Spec.CSI.VolumeHandle
	pod := podObject(claim+"-pod", claim, "exec sleep 100000", false)
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	cleanupPod(t, pod.Name)
	waitRunning(t, pod.Name)
	waitCNS(t, vc, 30*time.Second, "the claim and its pod in CNS", id,
		"PERSISTENT_VOLUME /"+pv.Name,
		"PERSISTENT_VOLUME_CLAIM "+ns+"/"+claim+" app=meta,tier=gold -> /"+pv.Name,
		"POD "+ns+"/"+pod.Name+" -> "+ns+"/"+claim)

	patch := `{"metadata":{"labels":{"tier":"silver","owner":"shop"}}}`
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Patch(t.Context(), claim, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	waitCNS(t, vc, 10*time.Second, "the label change in CNS within 10 s", id,
		"PERSISTENT_VOLUME /"+pv.Name,
		"PERSISTENT_VOLUME_CLAIM "+ns+"/"+claim+" app=meta,owner=shop,tier=silver -> /"+pv.Name,
		"POD "+ns+"/"+pod.Name+" -> "+ns+"/"+claim)
	t.Logf("label change in CNS after %s", time.Since(changed).Round(10*time.Millisecond))

	deletePod(t, pod.Name, pv.Name)
	waitCNS(t, vc, 30*time.Second, "the deleted pod gone from CNS", id,
		"PERSISTENT_VOLUME /"+pv.Name,
		"PERSISTENT_VOLUME_CLAIM "+ns+"/"+claim+" app=meta,owner=shop,tier=silver -> /"+pv.Name)

	t.Run("StatefulSet", func(t *testing.T) { statefulSetInCNS(t, vc) })

	// Retain, then the claim and the PV deleted by hand: an orphan.
	retain := `{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}`
	if _, err := env.kube.CoreV1().PersistentVolumes().Patch(t.Context(), pv.Name, types.MergePatchType, []byte(retain), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropVolume(t, vc, id) })
	if err := env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), claim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCNS(t, vc, 30*time.Second, "the deleted claim gone from CNS, the retained PV kept", id, "PERSISTENT_VOLUME /"+pv.Name)
	if err := env.kube.CoreV1().PersistentVolumes().Delete(t.Context(), pv.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCNS(t, vc, 30*time.Second, "the deleted PV gone from CNS", id)
	logPath := logOf(t, "csi-controller")
	eventually(t, 4*time.Minute, "the controller reporting the orphan", func(ctx context.Context) (bool, string, error) {
		b, err := os.ReadFile(logPath)
		if err != nil {
			return false, "", err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "has no PersistentVolume") && strings.Contains(line, id) {
				return true, "", nil
			}
		}
		return false, "no orphan line for " + id + " in " + logPath, nil
	})
	out, code := orphansCommand(t)
	if code != 1 || !strings.Contains(out, id) {
		t.Fatalf("vsphere-csi orphans: exit %d, want 1 listing %s:\n%s", code, id, out)
	}
	t.Logf("vsphere-csi orphans:\n%s", out)
	if v, err := vc.volume(t.Context(), id); err != nil || v == nil {
		t.Fatalf("the orphan's CNS volume: %v, %v; the syncer never deletes one", v, err)
	}
	if files := dataFiles(t, id); len(files) == 0 {
		t.Fatalf("the orphan's disk is gone")
	}
}

// statefulSetInCNS: each pod of a StatefulSet shows on its claim's volume.
func statefulSetInCNS(t *testing.T, vc *vcenter) {
	const name = "e2e-meta-sts"
	sts := statefulSet(name, 2, "gold-sc", "touch /tmp/ready; exec sleep 100000")
	apps := env.kube.AppsV1().StatefulSets(ns)
	if _, err := apps.Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StatefulSet: %v", err)
	}
	claims := []string{"data-" + name + "-0", "data-" + name + "-1"}
	var pvs []string
	t.Cleanup(func() { // on failure; a passing run has removed them below
		_ = apps.Delete(context.Background(), name, metav1.DeleteOptions{})
		for _, c := range claims {
			_ = env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), c, metav1.DeleteOptions{})
		}
	})
	waitReady(t, name, 2)
	for i, c := range claims {
		pv := waitBound(t, c)
		pvs = append(pvs, pv.Name)
		pod := fmt.Sprintf("%s-%d", name, i)
		waitCNS(t, vc, 30*time.Second, "StatefulSet pod "+pod+" in CNS", pv.Spec.CSI.VolumeHandle,
			"PERSISTENT_VOLUME /"+pv.Name,
			"PERSISTENT_VOLUME_CLAIM "+ns+"/"+c+" app="+name+" -> /"+pv.Name,
			"POD "+ns+"/"+pod+" -> "+ns+"/"+c)
	}
	deleteStatefulSet(t, name, claims, pvs, 2*time.Minute)
}

// orphansCommand runs `vsphere-csi orphans` as an admin would.
func orphansCommand(t *testing.T) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(env.root, "bin", "vsphere-csi"), "orphans",
		"--config", env.cluster.VCenter.Config, "--kubeconfig", env.kubeconfig)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("vsphere-csi orphans: %v\n%s", err, out)
	return "", -1
}

// dropVolume deletes a CNS volume and its disk (what an admin does with an
// orphan), so that the test leaves nothing behind.
func dropVolume(t *testing.T, vc *vcenter, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	task, err := vc.cns.DeleteVolume(ctx, []cnstypes.CnsVolumeId{{Id: id}}, true)
	if err == nil {
		_, err = task.WaitForResult(ctx)
	}
	if err != nil {
		t.Errorf("deleting the orphan %s: %v", id, err)
	}
}
