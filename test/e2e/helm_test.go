package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	helmRelease   = "vsphere-csi"
	helmNamespace = "vmware-system-csi"
)

// TestHelm installs the chart with helm, runs the driver and its sidecars
// as host processes with exactly the arguments the chart gives their
// containers (paths mapped to the hostPath/emptyDir/Secret volumes behind
// them, ports onto 127.0.0.1), provisions and uses a PVC of the chart's
// StorageClass, and checks that helm uninstall removes what it installed.
// It needs the driver processes hack/e2e.sh started to be stopped first
// (E2E_HELM=1 says they are).
func TestHelm(t *testing.T) {
	if os.Getenv("E2E_HELM") != "1" {
		t.Skip("runs in its own phase of hack/e2e.sh (E2E_HELM=1), after the other driver processes stop")
	}
	// What kubectl applied for the other tests would collide with the chart's objects.
	mustKubectl(t, "delete", "--ignore-not-found", "storageclass", "gold-sc")
	mustKubectl(t, "delete", "--ignore-not-found", "csidriver", driverName)
	mustKubectl(t, "create", "namespace", helmNamespace)
	mustKubectl(t, "label", "namespace", helmNamespace, "pod-security.kubernetes.io/enforce=privileged")
	mustKubectl(t, "-n", helmNamespace, "create", "secret", "generic", "vsphere-config-secret",
		"--from-file=csi-vsphere.conf="+filepath.Join(env.dir, "csi-vsphere.conf"))
	t.Cleanup(func() { _, _ = kubectl(context.Background(), "delete", "namespace", helmNamespace, "--wait=false") })

	kubeletDir := filepath.Join(env.dir, "kubelet")
	// Workloads never scheduled (their images are not here): their
	// containers run as host processes below instead.
	valuesFile := filepath.Join(env.dir, "helm-values.yaml")
	values := fmt.Sprintf(`node:
  kubeletDir: %q
  nodeSelector: {e2e-no-such-node: "true"}
  healthPort: 19838
controller:
  replicas: 1
  nodeSelector: {e2e-no-such-node: "true"}
  healthPort: 19828
metrics: {controllerPort: 19829, nodePort: 19839}
sidecars:
  nodeDriverRegistrar: {enabled: false}
  livenessProbe: {enabled: false}
topology: {enabled: true}
`, kubeletDir)
	if err := os.WriteFile(valuesFile, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"install", helmRelease, filepath.Join(env.root, "deploy/helm/vsphere-csi"), "--namespace", helmNamespace, "--values", valuesFile}
	start := time.Now()
	if out, err := helm(t, args...); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install (%.1fs)", time.Since(start).Seconds())
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = helm(t, "uninstall", helmRelease, "--namespace", helmNamespace)
		}
	})
	manifest, err := helm(t, "get", "manifest", helmRelease, "--namespace", helmNamespace)
	if err != nil {
		t.Fatalf("helm get manifest: %v\n%s", err, manifest)
	}
	var ctrl *appsv1.Deployment
	var node *appsv1.DaemonSet
	var installed []string // kind/name of every object, to check uninstall
	for _, doc := range strings.Split(manifest, "\n---") {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind == "" {
			continue
		}
		installed = append(installed, strings.ToLower(meta.Kind)+"/"+meta.Metadata.Name)
		switch meta.Kind {
		case "Deployment":
			ctrl = &appsv1.Deployment{}
			if err := yaml.Unmarshal([]byte(doc), ctrl); err != nil {
				t.Fatal(err)
			}
		case "DaemonSet":
			node = &appsv1.DaemonSet{}
			if err := yaml.Unmarshal([]byte(doc), node); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ctrl == nil || node == nil {
		t.Fatalf("the chart installed no controller Deployment or node DaemonSet: %v", installed)
	}
	t.Logf("helm installed %s", strings.Join(installed, ", "))

	nodeUUID, err := os.ReadFile(filepath.Join(env.dir, "node-uuid"))
	if err != nil {
		t.Fatal(err)
	}
	nodeVM, err := os.ReadFile(filepath.Join(env.dir, "node-vm"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.dir, "helm")
	// The node VM's identity (DMI on a real node) and where its disks appear.
	nodeExtra := []string{"--node-id=" + strings.TrimSpace(string(nodeUUID)), "--by-id-dir=" + filepath.Join(env.dir, "by-id", strings.TrimSpace(string(nodeVM)))}
	for _, c := range ctrl.Spec.Template.Spec.Containers {
		startContainer(t, filepath.Join(dir, "controller"), &ctrl.Spec.Template.Spec, c, nil)
	}
	for _, c := range node.Spec.Template.Spec.Containers {
		var extra []string
		if c.Name == "vsphere-csi" {
			extra = nodeExtra
		}
		startContainer(t, filepath.Join(dir, "node"), &node.Spec.Template.Spec, c, extra)
	}
	nodeLog := filepath.Join(env.dir, "logs", "helm-node-vsphere-csi.log")
	eventually(t, time.Minute, "kubelet registered the chart's node plugin (its own registration socket)", func(context.Context) (bool, string, error) {
		data, err := os.ReadFile(nodeLog)
		return strings.Contains(string(data), "Kubelet registered the driver"), "not in " + nodeLog, err
	})
	eventually(t, time.Minute, "CSINode lists the driver", func(ctx context.Context) (bool, string, error) {
		n, err := env.kube.StorageV1().CSINodes().Get(ctx, env.node, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, d := range n.Spec.Drivers {
			if d.Name == driverName {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("drivers %v", n.Spec.Drivers), nil
	})

	// The chart's StorageClass provisions a claim that a pod uses.
	const claim = "helm-pvc"
	createPVC(t, pvcObject(claim, "gold-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	pv := waitBound(t, claim)
	cleanupPod(t, "helm-writer")
	runPod(t, podObject("helm-writer", claim, `set -e; echo helm > /data/f; sync; [ "$(cat /data/f)" = helm ]`, false))
	deletePod(t, "helm-writer", pv.Name)
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

	start = time.Now()
	if out, err := helm(t, "uninstall", helmRelease, "--namespace", helmNamespace, "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	uninstalled = true
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
}

func helm(t *testing.T, args ...string) (string, error) {
	cmd := exec.CommandContext(t.Context(), filepath.Join(env.bin, "helm"), append(args, "--kubeconfig", env.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(env.dir, "helm-home/cache"),
		"HELM_CONFIG_HOME="+filepath.Join(env.dir, "helm-home/config"), "HELM_DATA_HOME="+filepath.Join(env.dir, "helm-home/data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startContainer runs a container of the chart as a host process: the
// binary its name stands for, its args with every path under a volume mount
// mapped to the volume's hostPath (or a directory standing for an emptyDir
// or the Secret), ":port" addresses bound to 127.0.0.1, and --kubeconfig for
// the sidecars (in a pod they use the service account).
func startContainer(t *testing.T, dir string, spec *corev1.PodSpec, c corev1.Container, extra []string) {
	t.Helper()
	binaries := map[string]string{
		"vsphere-csi":     filepath.Join(env.root, "bin/vsphere-csi"),
		"csi-provisioner": filepath.Join(env.bin, "csi-provisioner"),
		"csi-attacher":    filepath.Join(env.bin, "csi-attacher"),
		"csi-resizer":     filepath.Join(env.bin, "csi-resizer"),
		"csi-snapshotter": filepath.Join(env.bin, "csi-snapshotter"),
	}
	bin, ok := binaries[c.Name]
	if !ok {
		t.Fatalf("the chart renders container %s, which this test cannot run as a process", c.Name)
	}
	mounts := map[string]string{} // mountPath -> host path
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.HostPath != nil:
				mounts[m.MountPath] = v.HostPath.Path
			case v.EmptyDir != nil:
				mounts[m.MountPath] = filepath.Join(dir, "emptydir-"+v.Name)
				if err := os.MkdirAll(mounts[m.MountPath], 0o750); err != nil {
					t.Fatal(err)
				}
			case v.Secret != nil:
				d := filepath.Join(dir, "secret-"+v.Name)
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
				data, err := os.ReadFile(filepath.Join(env.dir, "csi-vsphere.conf"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "csi-vsphere.conf"), data, 0o600); err != nil {
					t.Fatal(err)
				}
				mounts[m.MountPath] = d
			}
		}
	}
	mapPath := func(s string) string {
		best := ""
		for mp := range mounts {
			if (s == mp || strings.HasPrefix(s, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
				best = mp
			}
		}
		if best == "" {
			return s
		}
		return mounts[best] + strings.TrimPrefix(s, best)
	}
	var args []string
	for _, a := range c.Args {
		name, val, hasVal := strings.Cut(a, "=")
		if !hasVal {
			args = append(args, a)
			continue
		}
		switch {
		case strings.HasPrefix(val, "unix://"):
			val = "unix://" + mapPath(strings.TrimPrefix(val, "unix://"))
		case strings.HasPrefix(val, "/"):
			val = mapPath(val)
		case strings.HasPrefix(val, ":"):
			val = "127.0.0.1" + val
		}
		args = append(args, name+"="+val)
	}
	if c.Name == "vsphere-csi" {
		// The config file where the container finds it (the Secret's mount).
		if !hasArg(args, "--config") && !hasArg(args, "--mode=node") {
			args = append(args, "--config="+mapPath("/etc/vsphere-csi/csi-vsphere.conf"))
		}
	} else {
		args = append(args, "--kubeconfig="+env.kubeconfig)
	}
	args = append(args, extra...)
	logPath := filepath.Join(env.dir, "logs", "helm-"+filepath.Base(dir)+"-"+c.Name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.Name, err)
	}
	// hack/e2e.sh down stops it by this PID if the test process dies first.
	pidFile := filepath.Join(env.dir, "pids", "helm-"+filepath.Base(dir)+"-"+c.Name)
	_ = os.WriteFile(pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
	t.Logf("%s/%s: pid %d: %s %s", filepath.Base(dir), c.Name, cmd.Process.Pid, filepath.Base(bin), strings.Join(args, " "))
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.Remove(pidFile)
		_ = logf.Close()
	})
	time.Sleep(200 * time.Millisecond)
	select {
	case <-done:
		data, _ := os.ReadFile(logPath)
		t.Fatalf("%s exited at once with the chart's arguments %v:\n%s", c.Name, args, data)
	default:
	}
}

func hasArg(args []string, prefix string) bool {
	for _, a := range args {
		if a == prefix || strings.HasPrefix(a, prefix+"=") {
			return true
		}
	}
	return false
}
