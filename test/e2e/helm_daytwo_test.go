//go:build e2e_chart

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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// driverImageNext is the same driver built again with another version:
// the image a `helm upgrade` moves to (hack/e2e.sh builds both).
const driverImageNext = "ghcr.io/vsphere-cns/vsphere-csi:e2e-next"

// helmDayTwo: while a pod uses a volume, `helm upgrade` to a newly built
// image with changed values, then `helm rollback`, then the node plugin's
// container killed (kubelet restarts it): the pod keeps its mount and its
// data throughout (it checks them every second and fails at the first
// miss), a new claim works after each step, and the volume unstages and
// detaches cleanly at the end.
func helmDayTwo(t *testing.T, valuesFile string) {
	t.Helper()
	const claim, user = "helm-day2", "helm-day2-user"
	createPVC(t, pvcObject(claim, "gold-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	cleanupPod(t, user)
	pod := podObject(user, claim, `set -e
echo day2 > /data/f; sync
touch /tmp/ready
while :; do
  [ "$(cat /data/f)" = day2 ] || { echo "data lost: $(cat /data/f)"; exit 1; }
  date > /data/heartbeat || { echo "the mount is gone"; exit 1; }
  sleep 1
done`, false)
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}}, PeriodSeconds: 1}
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stillUsing := func(when string) {
		t.Helper()
		eventually(t, 2*time.Minute, "pod "+user+" Running and Ready "+when, func(ctx context.Context) (bool, string, error) {
			p, err := env.kube.CoreV1().Pods(ns).Get(ctx, user, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
				t.Fatalf("pod %s ended %s: %s", user, when, describePod(ctx, p))
			}
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			return ready, describePod(ctx, p), nil
		})
	}
	stillUsing("before day two")
	pv := waitBound(t, claim) // WaitForFirstConsumer: bound once the pod was scheduled
	newClaimWorks := func(name string) {
		t.Helper()
		createPVC(t, pvcObject(name, "gold-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
		cleanupPod(t, name+"-writer")
		runPod(t, podObject(name+"-writer", name, `set -e; echo new > /data/f; sync; [ "$(cat /data/f)" = new ]`, false))
		npv := waitBound(t, name)
		deletePod(t, name+"-writer", npv.Name)
		deletePVC(t, name, npv.Name)
	}

	// helm upgrade: a newly built image and a changed value.
	before := nodePod(t)
	start := time.Now()
	if out, err := helm(t, "upgrade", helmRelease, filepath.Join(env.root, "deploy/helm/vsphere-csi"), "--namespace", helmNamespace,
		"--values", valuesFile, "--set", "image.tag="+strings.SplitN(driverImageNext, ":", 2)[1], "--set", "logLevel=4"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	after := waitNodePodReplaced(t, before, driverImageNext)
	t.Logf("helm upgrade to %s, logLevel 4: node pod %s replaced by %s (%.1fs)", driverImageNext, before.Name, after.Name, time.Since(start).Seconds())
	waitControllerImage(t, driverImageNext)
	stillUsing("after helm upgrade")
	newClaimWorks("helm-after-upgrade")

	// helm rollback to the first release.
	before = after
	start = time.Now()
	if out, err := helm(t, "rollback", helmRelease, "1", "--namespace", helmNamespace); err != nil {
		t.Fatalf("helm rollback: %v\n%s", err, out)
	}
	after = waitNodePodReplaced(t, before, driverImage)
	t.Logf("helm rollback: node pod %s replaced by %s (%.1fs)", before.Name, after.Name, time.Since(start).Seconds())
	waitControllerImage(t, driverImage)
	stillUsing("after helm rollback")
	newClaimWorks("helm-after-rollback")

	// The node plugin killed with the volume mounted: kubelet restarts it.
	restarts := after.Status.ContainerStatuses[0].RestartCount
	pid := nodePluginPID(t, after)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the node plugin (pid %d): %v", pid, err)
	}
	t.Logf("killed the node plugin's process %d (SIGKILL)", pid)
	eventually(t, 2*time.Minute, "kubelet restarted the node plugin's container", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(helmNamespace).Get(ctx, after.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == "vsphere-csi" {
				return c.RestartCount > restarts && c.Ready, fmt.Sprintf("restarts %d, ready %v", c.RestartCount, c.Ready), nil
			}
		}
		return false, "no vsphere-csi container", nil
	})
	stillUsing("after the node plugin's restart")
	newClaimWorks("helm-after-restart")

	// The pod's volume unstages and detaches cleanly.
	deletePod(t, user, pv.Name)
	for _, line := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.Contains(f[4], pv.Name) {
			t.Errorf("%s still mounted after its pod is gone: %s", pv.Name, f[4])
		}
	}
	deletePVC(t, claim, pv.Name)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// nodePod is the chart's node plugin pod (one node).
func nodePod(t *testing.T) corev1.Pod {
	t.Helper()
	pods, err := env.kube.CoreV1().Pods(helmNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node", FieldSelector: "spec.nodeName=" + env.node})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("node pods: %v (%v)", pods, err)
	}
	return pods.Items[0]
}

// waitNodePodReplaced waits for a node pod other than old, Ready, running image.
func waitNodePodReplaced(t *testing.T, old corev1.Pod, image string) corev1.Pod {
	t.Helper()
	var got corev1.Pod
	eventually(t, 3*time.Minute, "a new node plugin pod with "+image+" Ready", func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(helmNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=node", FieldSelector: "spec.nodeName=" + env.node})
		if err != nil {
			return false, "", err
		}
		var states []string
		for _, p := range pods.Items {
			states = append(states, p.Name+" "+p.Spec.Containers[0].Image+" "+string(p.Status.Phase))
			if p.UID == old.UID || p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != image || len(p.Status.ContainerStatuses) == 0 {
				continue
			}
			ready := true
			for _, c := range p.Status.ContainerStatuses {
				ready = ready && c.Ready
			}
			if ready && len(pods.Items) == 1 {
				got = p
				return true, "", nil
			}
		}
		return false, strings.Join(states, "; "), nil
	})
	return got
}

// waitControllerImage waits for the controller Deployment's pods to run image, Ready.
func waitControllerImage(t *testing.T, image string) {
	t.Helper()
	eventually(t, 3*time.Minute, "the controller pod with "+image+" Ready", func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(helmNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
		if err != nil {
			return false, "", err
		}
		var states []string
		ok := len(pods.Items) == 1
		for _, p := range pods.Items {
			states = append(states, p.Name+" "+p.Spec.Containers[0].Image+" "+string(p.Status.Phase))
			ready := p.DeletionTimestamp == nil && p.Spec.Containers[0].Image == image && len(p.Status.ContainerStatuses) > 0
			for _, c := range p.Status.ContainerStatuses {
				ready = ready && c.Ready
			}
			ok = ok && ready
		}
		return ok, strings.Join(states, "; "), nil
	})
}

// nodePluginPID finds the node plugin's process on this machine (a
// container's processes are the host's): vsphere-csi in node mode in the
// pod's cgroup (other nodes' node plugins run on this machine too).
func nodePluginPID(t *testing.T, p corev1.Pod) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != "vsphere-csi" || !strings.Contains(string(cmd), "--mode=node") {
			continue
		}
		if cg, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup")); err == nil && strings.Contains(string(cg), "pod"+string(p.UID)) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("node plugin processes of pod %s: %v, want one", p.Name, found)
	}
	return found[0]
}
