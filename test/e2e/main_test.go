package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/harness"
)

// env is the cluster hack/e2e.sh started, as its cluster.json (E2E_CLUSTER)
// says (harness.Cluster), and a client of its API server.
var env struct {
	cluster    *harness.Cluster
	dir        string // state, logs, kubeconfig
	bin        string // kubectl, helm, ...
	root       string // the repository
	images     string // the OCI archives hack/e2e.sh built and imported
	node       string // node 0, which plays the zone-b node VM
	kubeconfig string
	kube       kubernetes.Interface
}

const (
	driverName = "csi.vsphere.vmware.com"
	ns         = "default"
	testImage  = "docker.io/library/busybox:e2e"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// go test -list (hack/e2e.sh asks each phase's build which tests it has) needs no cluster.
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	path := os.Getenv("E2E_CLUSTER")
	if path == "" {
		fmt.Println("test/e2e needs a cluster: run `make e2e` (or hack/e2e.sh up, then hack/e2e.sh test)")
		os.Exit(0)
	}
	c, err := harness.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "E2E_CLUSTER:", err)
		os.Exit(1)
	}
	env.cluster = c
	env.dir, env.bin, env.root, env.images, env.kubeconfig = c.Dir, c.Bin, c.Root, c.Images, c.Kubeconfig
	env.node = c.Nodes[0].Name
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeconfig:", err)
		os.Exit(1)
	}
	// client-go's default of 5 requests a second, shared by every test running
	// in parallel (each poll is a get and a list of events), made the tests
	// wait for their own client: a poll of 20 claims took 8 s.
	cfg.QPS, cfg.Burst = 100, 200
	if env.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	// The seed's StorageClass, as a user applies it.
	if out, err := kubectl(context.Background(), "apply", "-f", filepath.Join(env.root, "deploy/examples/storageclass.yaml")); err != nil {
		fmt.Fprintf(os.Stderr, "kubectl apply of the seed's StorageClass: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// kubectl runs the cluster's kubectl.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "kubectl"), append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(t.Context(), args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// kubectlApply applies a manifest given as text.
func kubectlApply(t *testing.T, manifest string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(env.bin, "kubectl"), "--kubeconfig", env.kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\nmanifest:\n%s", err, out, manifest)
	}
}

// eventually polls cond every 500 ms until it is done or timeout passes; the
// failure names what was awaited and the last state cond reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (done bool, state string, err error)) {
	t.Helper()
	start := time.Now()
	var state string
	for {
		done, s, err := cond(t.Context())
		if err != nil {
			s = "error: " + err.Error()
		}
		if s != "" {
			state = s
		}
		if done && err == nil {
			t.Logf("%s (%.1fs)", what, time.Since(start).Seconds())
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for: %s\nlast state: %s", timeout, what, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func pvcObject(name, class string, size string, mode corev1.PersistentVolumeAccessMode, volumeMode corev1.PersistentVolumeMode) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{mode},
			StorageClassName: &class,
			VolumeMode:       &volumeMode,
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

// createPVC creates the claim, deleted when the test ends.
func createPVC(t *testing.T, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	cleanupPVC(t, pvc.Name)
	if _, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Create(t.Context(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PVC %s: %v", pvc.Name, err)
	}
}

// waitBound waits for the claim to be Bound and returns its PV.
func waitBound(t *testing.T, claim string) *corev1.PersistentVolume {
	t.Helper()
	var pvName string
	eventually(t, 2*time.Minute, "PVC "+claim+" Bound", func(ctx context.Context) (bool, string, error) {
		pvc, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		pvName = pvc.Spec.VolumeName
		return pvc.Status.Phase == corev1.ClaimBound, fmt.Sprintf("phase %s; events: %s", pvc.Status.Phase, eventsOf(ctx, "PersistentVolumeClaim", claim)), nil
	})
	pv, err := env.kube.CoreV1().PersistentVolumes().Get(t.Context(), pvName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PV %s of PVC %s: %v", pvName, claim, err)
	}
	return pv
}

// eventsOf summarizes the events of an object, oldest first.
func eventsOf(ctx context.Context, kind, name string) string {
	list, err := env.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "\n  %s %s (x%d): %s", e.Type, e.Reason, e.Count, e.Message)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// podObject is a hostNetwork busybox pod (pods have no network of their
// own here) running script with the claim at /data (or as /dev/xvda).
func podObject(name, claim, script string, block bool) *corev1.Pod {
	grace := int64(1)
	c := corev1.Container{
		Name: "main", Image: testImage, ImagePullPolicy: corev1.PullNever,
		Command:                  []string{"/bin/sh", "-c", script},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if block {
		c.VolumeDevices = []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/xvda"}}
	} else {
		c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{c},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			}}},
		},
	}
}

// runPod runs a pod to completion and fails the test unless it Succeeded;
// the failure shows the container's exit code, its output and the events.
func runPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	eventually(t, 3*time.Minute, "pod "+pod.Name+" to run to completion", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		state := describePod(ctx, p)
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			return true, state, nil
		case corev1.PodFailed:
			t.Fatalf("pod %s failed: %s", pod.Name, state)
		}
		return false, state, nil
	})
}

func describePod(ctx context.Context, p *corev1.Pod) string {
	s := fmt.Sprintf("phase %s", p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil {
			s += fmt.Sprintf("; container %s exited %d (%s): %q", cs.Name, term.ExitCode, term.Reason, term.Message)
		}
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf("; container %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
	}
	return s + "; events: " + eventsOf(ctx, "Pod", p.Name)
}

// deletePod deletes a pod and waits until it is gone and its volumes are
// detached from the node (no VolumeAttachment left for pv, if given).
func deletePod(t *testing.T, name string, pvs ...string) {
	t.Helper()
	err := env.kube.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete pod %s: %v", name, err)
	}
	eventually(t, 2*time.Minute, "pod "+name+" gone", func(ctx context.Context) (bool, string, error) {
		_, err := env.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, "still there", err
	})
	for _, pv := range pvs {
		waitDetached(t, pv)
	}
}

// waitDetached waits until no VolumeAttachment names the PV.
func waitDetached(t *testing.T, pv string) {
	t.Helper()
	eventually(t, 2*time.Minute, "PV "+pv+" detached (no VolumeAttachment)", func(ctx context.Context) (bool, string, error) {
		list, err := env.kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		for _, va := range list.Items {
			if va.Spec.Source.PersistentVolumeName != nil && *va.Spec.Source.PersistentVolumeName == pv {
				return false, fmt.Sprintf("VolumeAttachment %s attached=%v", va.Name, va.Status.Attached), nil
			}
		}
		return true, "", nil
	})
}

// deletePVC deletes a claim and waits for its PV to go.
func deletePVC(t *testing.T, claim, pv string) {
	t.Helper()
	deletePVCs(t, []string{claim}, []string{pv})
}

// deletePVCs deletes the claims (pvs[i] is claims[i]'s PV, or "") all at
// once, then waits for each claim and PV to be gone.
func deletePVCs(t *testing.T, claims, pvs []string) {
	t.Helper()
	for _, claim := range claims {
		err := env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(t.Context(), claim, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("delete PVC %s: %v", claim, err)
		}
	}
	for i, claim := range claims {
		waitPVCGone(t, claim, pvs[i])
	}
}

// waitPVCGone waits for the claim and its PV (if pv is not "") to be gone.
func waitPVCGone(t *testing.T, claim, pv string) {
	t.Helper()
	eventually(t, 2*time.Minute, "PVC "+claim+" and PV "+pv+" gone", func(ctx context.Context) (bool, string, error) {
		_, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err == nil {
			return false, "PVC still there", nil
		}
		if pv == "" {
			return true, "", nil
		}
		p, err := env.kube.CoreV1().PersistentVolumes().Get(ctx, pv, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", err
		}
		return false, fmt.Sprintf("PV %s phase %s; events: %s", pv, p.Status.Phase, eventsOf(ctx, "PersistentVolume", pv)), nil
	})
}

// cleanupPVC deletes the claim when the test ends (without waiting).
func cleanupPVC(t *testing.T, claim string) {
	t.Cleanup(func() {
		_ = env.kube.CoreV1().PersistentVolumeClaims(ns).Delete(context.Background(), claim, metav1.DeleteOptions{})
	})
}

func cleanupPod(t *testing.T, name string) {
	t.Cleanup(func() {
		_ = env.kube.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// logOf is the log of a process hack/e2e.sh started (its record).
func logOf(t *testing.T, name string) string {
	t.Helper()
	p, err := env.cluster.Process(name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Log
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
