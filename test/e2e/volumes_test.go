package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestStatefulSet: 3 replicas with volumeClaimTemplates get 3 bound claims;
// each pod writes its name; after scaling to 0 and back to 3 each pod finds
// its own name in its own volume.
func TestStatefulSet(t *testing.T) {
	t.Parallel()
	const name = "e2e-web"
	replicas := int32(3)
	class := "gold-sc"
	// ROUND=1: write the pod's name; ROUND=2: it must be there already.
	script := `set -e
if [ "$ROUND" = 2 ]; then
  got="$(cat /data/id)" || { echo "no /data/id on the second round"; exit 1; }
  [ "$got" = "$POD_NAME" ] || { echo "/data/id is $got, want $POD_NAME"; exit 1; }
else
  echo "$POD_NAME" > /data/id; sync
fi
touch /tmp/ready
exec sleep 100000`
	sts := statefulSet(name, replicas, class, script)
	apps := env.kube.AppsV1().StatefulSets(ns)
	if _, err := apps.Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StatefulSet: %v", err)
	}
	claims := []string{"data-" + name + "-0", "data-" + name + "-1", "data-" + name + "-2"}
	t.Cleanup(func() {
		_ = apps.Delete(context.Background(), name, metav1.DeleteOptions{})
		for _, c := range claims {
			_ = env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), c, metav1.DeleteOptions{})
		}
	})
	waitReady(t, name, 3)
	var pvs []string
	for _, c := range claims {
		pvs = append(pvs, waitBound(t, c).Name)
	}

	scale(t, name, 0)
	eventually(t, 2*time.Minute, "StatefulSet "+name+" scaled to 0", func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
	for _, pv := range pvs {
		waitDetached(t, pv)
	}
	// Second round: the pods must find their own names.
	patch := `{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"main","env":[{"name":"ROUND","value":"2"}]}]}}}}`
	if _, err := apps.Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scale to 3 with ROUND=2: %v", err)
	}
	waitReady(t, name, 3)
	pods, err := env.kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if env := p.Spec.Containers[0].Env; len(env) == 0 || env[0].Name != "ROUND" || env[0].Value != "2" {
			t.Fatalf("pod %s runs with env %v: not the second round's template", p.Name, env)
		}
	}
	t.Logf("after 0 -> 3, each of %d pods found its own name in its own volume", len(pods.Items))

	deleteStatefulSet(t, name, claims, pvs, 2*time.Minute)
}

// createStatefulSet creates a StatefulSet of n pods (statefulSet, class
// gold-sc) and returns its claims' names; whatever happens, the test's
// cleanup deletes it and them.
func createStatefulSet(t *testing.T, name string, n int, script string) []string {
	t.Helper()
	return createStatefulSetOf(t, statefulSet(name, int32(n), "gold-sc", script))
}

// createStatefulSetOf is createStatefulSet for a StatefulSet made by the caller.
func createStatefulSetOf(t *testing.T, sts *appsv1.StatefulSet) []string {
	t.Helper()
	apps := env.kube.AppsV1().StatefulSets(ns)
	name, n := sts.Name, int(*sts.Spec.Replicas)
	if _, err := apps.Create(t.Context(), sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StatefulSet %s: %v", name, err)
	}
	var claims []string
	for i := range n {
		claims = append(claims, fmt.Sprintf("data-%s-%d", name, i))
	}
	t.Cleanup(func() {
		_ = apps.Delete(context.Background(), name, metav1.DeleteOptions{})
		for _, c := range claims {
			cleanupPVC(t, c)
		}
	})
	return claims
}

// deleteStatefulSet deletes a StatefulSet, waits (up to podsGone) until its
// pods are gone, then for each claim until its PV is detached, and deletes
// the claim and its volume.
func deleteStatefulSet(t *testing.T, name string, claims, pvs []string, podsGone time.Duration) {
	t.Helper()
	if err := env.kube.AppsV1().StatefulSets(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, podsGone, "StatefulSet pods gone", func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
	for _, pv := range pvs {
		waitDetached(t, pv)
	}
	deletePVCs(t, claims, pvs)
}

// statefulSet is a StatefulSet of busybox pods running script, each with
// a 1Gi claim of class mounted at /data (Parallel: all pods at once), ready
// once script touches /tmp/ready.
func statefulSet(name string, replicas int32, class, script string) *appsv1.StatefulSet {
	grace := int64(1)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "main", Image: testImage, ImagePullPolicy: corev1.PullNever,
						Command: []string{"/bin/sh", "-c", script},
						Env: []corev1.EnvVar{
							{Name: "ROUND", Value: "1"},
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}},
							PeriodSeconds: 1,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: &class,
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
					},
				},
			}},
		},
	}
}

// waitReady waits for n ready pods of the StatefulSet; failures show each
// pod's state.
func waitReady(t *testing.T, name string, n int) {
	t.Helper()
	waitAppPods(t, name, n, 4*time.Minute, fmt.Sprintf("%d ready pods of StatefulSet %s", n, name), func(*corev1.Pod) bool { return true })
}

// waitAppPods waits until n of the pods labelled app=name that counts
// selects are Ready; one of them whose container restarted or failed its
// check ends the test. While it waits, it shows every pod's state.
func waitAppPods(t *testing.T, name string, n int, timeout time.Duration, what string, counts func(*corev1.Pod) bool) {
	t.Helper()
	eventually(t, timeout, what, func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		ready := 0
		var states []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if !counts(p) {
				states = append(states, p.Name+" on "+p.Spec.NodeName+" (not counted): "+describePod(ctx, p))
				continue
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount > 0 || (cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0) {
					t.Fatalf("pod %s failed its check: %s", p.Name, describePod(ctx, p))
				}
			}
			if isReady(p) {
				ready++
			} else {
				states = append(states, p.Name+" on "+p.Spec.NodeName+": "+describePod(ctx, p))
			}
		}
		return ready == n, fmt.Sprintf("%d/%d ready; %s", ready, n, strings.Join(states, "\n")), nil
	})
}

func scale(t *testing.T, name string, n int) {
	t.Helper()
	mustKubectl(t, "scale", "statefulset/"+name, fmt.Sprintf("--replicas=%d", n))
}

// pendingWithEvent creates a claim that must stay Pending and waits for a
// ProvisioningFailed event carrying want (every string of it).
func pendingWithEvent(t *testing.T, pvc *corev1.PersistentVolumeClaim, want ...string) {
	t.Helper()
	createPVC(t, pvc)
	var msg string
	eventually(t, time.Minute, "a ProvisioningFailed event on PVC "+pvc.Name+" saying "+strings.Join(want, " … "), func(ctx context.Context) (bool, string, error) {
		list, err := env.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=" + pvc.Name + ",reason=ProvisioningFailed",
		})
		if err != nil {
			return false, "", err
		}
	events:
		for _, e := range list.Items {
			for _, w := range want {
				if !strings.Contains(e.Message, w) {
					continue events
				}
			}
			msg = e.Message
			return true, "", nil
		}
		return false, "events: " + eventsOf(ctx, "PersistentVolumeClaim", pvc.Name), nil
	})
	t.Logf("event: %s", msg)
	got, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), pvc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.ClaimPending {
		t.Fatalf("PVC %s is %s, want Pending", pvc.Name, got.Status.Phase)
	}
	if err := env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), pvc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestReadWriteManyBlockPending: a raw block volume can't be ReadWriteMany
// (a VMDK attaches to one node VM; ReadWriteMany volumes are file shares,
// rwx_test.go); the claim stays Pending and the event says why and what to
// use.
func TestReadWriteManyBlockPending(t *testing.T) {
	t.Parallel()
	pendingWithEvent(t, pvcObject("e2e-rwx-block", "gold-sc", "1Gi", corev1.ReadWriteMany, corev1.PersistentVolumeBlock),
		"InvalidArgument", "raw block", "ReadWriteOnce", "volumeMode: Filesystem")
}

// TestMissingPolicyPending: a StorageClass naming a policy vCenter does not
// have: Pending, and the event names the policy and the ones that exist.
func TestMissingPolicyPending(t *testing.T) {
	t.Parallel()
	sc := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "e2e-platinum"},
		Provisioner: driverName,
		Parameters:  map[string]string{"storagepolicyname": "Platinum"},
	}
	if _, err := env.kube.StorageV1().StorageClasses().Create(t.Context(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create StorageClass: %v", err)
	}
	t.Cleanup(func() {
		_ = env.kube.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	pendingWithEvent(t, pvcObject("e2e-platinum", sc.Name, "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem),
		`"Platinum"`, "Gold")
}

// TestRawBlock: a Block claim reaches the container as a block device of
// the claim's size.
func TestRawBlock(t *testing.T) {
	t.Parallel()
	const claim = "e2e-raw-block"
	createPVC(t, pvcObject(claim, "gold-sc", "2Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeBlock))
	pv := waitBound(t, claim)
	cleanupPod(t, "e2e-raw-block")
	runPod(t, podObject("e2e-raw-block", claim,
		`set -e; [ -b /dev/xvda ] || { ls -l /dev/xvda; exit 1; }
size=$(blockdev --getsize64 /dev/xvda); [ "$size" = 2147483648 ] || { echo "size $size, want 2Gi"; exit 1; }
echo raw > /tmp/x; dd if=/tmp/x of=/dev/xvda bs=512 count=1 conv=sync 2>/dev/null; dd if=/dev/xvda bs=3 count=1 2>/dev/null | grep -q raw`, true))
	deletePod(t, "e2e-raw-block", pv.Name)
	deletePVC(t, claim, pv.Name)
}
