//go:build e2e_chart

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestHelm installs the chart with helm as a user does, with the images
// built here (the driver's from the Dockerfile, the sidecars' from their
// binaries), the config Secret and topology on: kubelet runs the controller
// Deployment and the node DaemonSet as pods. The controller reaches the API
// server through the kubernetes Service (kube-proxy) and vCenter over the
// pod network; the node plugin runs privileged with the kubelet directory
// mounted Bidirectional and registers itself on the chart's registration
// path. The getting-started walkthrough (data surviving its pod), a
// StatefulSet and a snapshot run against it, then day two (helm_daytwo_test.go:
// upgrade, rollback, a killed node plugin, a volume in use throughout);
// helm uninstall leaves no pod,
// no object of the chart, no CSIDriver and no mount. It needs the driver
// processes hack/e2e.sh started to be stopped first: it is built only with
// the tag e2e_chart, which makes it a test of the chart phase (doc.go).
func TestHelm(t *testing.T) {
	if p, err := env.cluster.Running("csi-controller"); err == nil {
		t.Fatalf("the driver's controller runs as a host process (pid %d): the chart phase of hack/e2e.sh test stops it first", p.PID)
	}
	rel := installChart(t, "")
	valuesFile, installed, start := rel.valuesFile, rel.installed, rel.start

	// helm test: the doctor checks vCenter, the privileges, the classes and
	// the node VMs from a pod of the chart, and finds nothing wrong here.
	if out, err := helm(t, "test", helmRelease, "--namespace", helmNamespace, "--timeout", "3m"); err != nil {
		t.Errorf("helm test (vsphere-csi doctor): %v\n%s", err, out)
	} else {
		t.Logf("helm test (vsphere-csi doctor):\n%s", out)
	}

	// The getting-started walkthrough: the chart's StorageClass, a claim, a
	// pod that writes, another that finds the data after the first is gone.
	const claim = "helm-pvc"
	createPVC(t, pvcObject(claim, "gold-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	cleanupPod(t, "helm-writer")
	runPod(t, podObject("helm-writer", claim, `set -e; echo helm > /data/f; sync; [ "$(cat /data/f)" = helm ]`, false))
	pv := waitBound(t, claim) // WaitForFirstConsumer: bound once the pod was scheduled
	deletePod(t, "helm-writer", pv.Name)
	cleanupPod(t, "helm-reader")
	runPod(t, podObject("helm-reader", claim, `set -e; [ "$(cat /data/f)" = helm ]`, false))
	deletePod(t, "helm-reader", pv.Name)

	// The chart's snapshotter and VolumeSnapshotClass (the CRDs are there).
	kubectlApply(t, `apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: helm-snap, namespace: `+ns+`}
spec:
  volumeSnapshotClassName: vsphere-snapshot
  source: {persistentVolumeClaimName: `+claim+`}
`)
	eventually(t, 2*time.Minute, "VolumeSnapshot helm-snap of the chart's class readyToUse", func(ctx context.Context) (bool, string, error) {
		out, err := kubectl(ctx, "get", "volumesnapshot", "helm-snap", "-o", "jsonpath={.status.readyToUse} {.status.error.message}")
		return err == nil && strings.HasPrefix(out, "true"), out + "; events: " + eventsOf(ctx, "VolumeSnapshot", "helm-snap"), nil
	})
	mustKubectl(t, "delete", "volumesnapshot", "helm-snap", "--wait=true", "--timeout=2m")
	deletePVC(t, claim, pv.Name)

	// A StatefulSet of 2: each pod writes its name, all are deleted, each
	// finds its own data when they come back.
	helmStatefulSet(t)

	// Day two: helm upgrade and rollback, a node plugin restart, with a
	// volume in use throughout.
	helmDayTwo(t, valuesFile)

	// Several nodes: volumes moving between node VMs, zones, a drain, a
	// node lost (helm_nodes_test.go).
	helmNodes(t)

	start = time.Now()
	if out, err := helm(t, "uninstall", helmRelease, "--namespace", helmNamespace, "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	rel.uninstalled = true
	t.Logf("helm uninstall (%.1fs)", time.Since(start).Seconds())
	for _, o := range installed {
		kind, name, _ := strings.Cut(o, "/")
		out, err := kubectl(t.Context(), "get", "--ignore-not-found", "-n", helmNamespace, kind, name, "-o", "name")
		if err != nil {
			t.Errorf("kubectl get %s: %v\n%s", o, err, out)
		} else if strings.TrimSpace(out) != "" {
			t.Errorf("%s is still there after helm uninstall", o)
		}
	}
	if _, err := env.kube.StorageV1().CSIDrivers().Get(t.Context(), driverName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("CSIDriver %s still there after helm uninstall (err %v)", driverName, err)
	}
	eventually(t, time.Minute, "no pod left in "+helmNamespace, func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(helmNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods", len(pods.Items)), nil
	})
	// No volume mount of the driver left on any node (staging, publish).
	for node, mountinfo := range mountTables(t) {
		for _, line := range strings.Split(mountinfo, "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.Contains(f[4], "/kubernetes.io/csi/") && strings.HasPrefix(f[4], env.dir) {
				t.Errorf("a CSI mount is left on %s after uninstall: %s", node, f[4])
			}
		}
	}
}

// helmStatefulSet runs a StatefulSet of 2 on the chart's class: each pod
// writes its name; the template changed (ROUND=2) replaces every pod, and
// each replacement must find its own name in its own volume to be Ready.
func helmStatefulSet(t *testing.T) {
	t.Helper()
	const name = "helm-web"
	script := `set -e
if [ "$ROUND" = 2 ]; then
  got="$(cat /data/id)" || { echo "no /data/id on the second round"; exit 1; }
  [ "$got" = "$POD_NAME" ] || { echo "/data/id is $got, want $POD_NAME"; exit 1; }
else
  echo "$POD_NAME" > /data/id; sync
fi
touch /tmp/ready
exec sleep 100000`
	apps := env.kube.AppsV1().StatefulSets(ns)
	claims := createStatefulSet(t, name, 2, script)
	waitReady(t, name, 2)
	var pvs []string
	for _, c := range claims {
		pvs = append(pvs, waitBound(t, c).Name)
	}
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"main","env":[{"name":"ROUND","value":"2"}]}]}}}}`
	if _, err := apps.Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("ROUND=2: %v", err)
	}
	eventually(t, 4*time.Minute, "StatefulSet "+name+": both pods replaced, each Ready with its own data", func(ctx context.Context) (bool, string, error) {
		sts, err := apps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		st := sts.Status
		return st.ObservedGeneration >= sts.Generation && st.UpdatedReplicas == 2 && st.ReadyReplicas == 2 && st.CurrentRevision == st.UpdateRevision,
			fmt.Sprintf("updated %d, ready %d", st.UpdatedReplicas, st.ReadyReplicas), nil
	})
	deleteStatefulSet(t, name, claims, pvs, 2*time.Minute)
}
