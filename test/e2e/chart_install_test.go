//go:build e2e_chart || e2e_conformance

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/oci"
)

const (
	helmRelease   = "vsphere-csi"
	helmNamespace = "vmware-system-csi"
)

// spareTaint keeps the test pods off the nodes hack/e2e.sh starts for the
// helm phase (e2e-node-N, playing node VM k8s-node-N in zone-a) until
// a test takes them in; the node plugin's DaemonSet tolerates it.
const spareTaint = "e2e.vsphere-csi/spare"

// chartRelease is the chart as installChart installed it.
type chartRelease struct {
	valuesFile  string
	installed   []string // kind/name of every object, to check uninstall
	start       time.Time
	uninstalled bool // set by a test that uninstalled it (else cleanup does)
}

// installChart installs the chart with helm as a user does, with the images
// built here (the driver's from the Dockerfile, the sidecars' from their
// binaries), the config Secret and topology on, extraValues (YAML) added to
// the values; it returns once the controller and a node pod on every node
// are Ready and every CSINode lists the driver. The chart goes at the
// test's end unless the test uninstalled it.
func installChart(t *testing.T, extraValues string) *chartRelease {
	t.Helper()
	// What kubectl applied for the other tests would collide with the chart's objects.
	mustKubectl(t, "delete", "--ignore-not-found", "storageclass", "gold-sc")
	mustKubectl(t, "delete", "--ignore-not-found", "csidriver", driverName)
	mustKubectl(t, "create", "namespace", helmNamespace)
	mustKubectl(t, "label", "namespace", helmNamespace, "pod-security.kubernetes.io/enforce=privileged")
	mustKubectl(t, "-n", helmNamespace, "create", "secret", "generic", "vsphere-config-secret",
		"--from-file=csi-vsphere.conf="+env.cluster.VCenter.Config)
	t.Cleanup(func() { _, _ = kubectl(context.Background(), "delete", "namespace", helmNamespace, "--wait=false") })

	// The node VM each node plays: its BIOS UUID (in DMI on a real node VM)
	// and where the embedded vCenter puts its disks' links (/dev/disk/by-id
	// on a real node), both under the kubelet directory, which the chart
	// mounts into the node plugin: the same path on every node, each node's
	// own content (hack/e2e/nodes.sh, node_identity).
	identity := env.cluster.Identity
	repo, tag, _ := strings.Cut(driverImage, ":")
	values := fmt.Sprintf(`image: {repository: %s, tag: %s, pullPolicy: Never}
node:
  kubeletDir: %q
  extraArgs: ["--dmi-dir=%s", "--by-id-dir=%s"]
  healthPort: 19838 # the node pod is on the host's network: ports away from the defaults others may hold
metrics: {nodePort: 19839}
controller:
  replicas: 1
  # The sidecars built here (csi-resizer v2.3.0 among them) have the gate: a rollout hands
  # the leases over at once.
  leaderElection: {releaseOnExit: true}
sidecars:
  provisioner: {image: {tag: %s, pullPolicy: Never}}
  attacher: {image: {tag: %s, pullPolicy: Never}}
  resizer: {image: {tag: %s, pullPolicy: Never}}
  snapshotter: {image: {tag: %s, pullPolicy: Never}}
  nodeDriverRegistrar: {enabled: false}
  livenessProbe: {enabled: false}
topology: {enabled: true}
# With zones, a claim's volume goes where its pod can run.
storageClasses:
  - {name: gold-sc, storagePolicyName: Gold, reclaimPolicy: Delete, volumeBindingMode: WaitForFirstConsumer}
%s`, repo, tag, env.cluster.KubeletDir, filepath.Join(identity, "dmi"), filepath.Join(identity, "by-id"),
		sidecarTag(t, "csi-provisioner"), sidecarTag(t, "csi-attacher"), sidecarTag(t, "csi-resizer"), sidecarTag(t, "csi-snapshotter"), extraValues)
	valuesFile := filepath.Join(env.dir, "helm-values.yaml")
	if err := os.WriteFile(valuesFile, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("values:\n%s", values)
	start := time.Now()
	if out, err := helm(t, "install", helmRelease, filepath.Join(env.root, "deploy/helm/vsphere-csi"), "--namespace", helmNamespace,
		"--values", valuesFile, "--wait", "--timeout", "3m"); err != nil {
		out += "\n" + describeNamespace(helmNamespace)
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install --wait (%.1fs)", time.Since(start).Seconds())
	rel := &chartRelease{valuesFile: valuesFile, start: start}
	t.Cleanup(func() {
		if !rel.uninstalled {
			_, _ = helm(t, "uninstall", helmRelease, "--namespace", helmNamespace)
		}
	})
	manifest, err := helm(t, "get", "manifest", helmRelease, "--namespace", helmNamespace)
	if err != nil {
		t.Fatalf("helm get manifest: %v\n%s", err, manifest)
	}
	for _, doc := range strings.Split(manifest, "\n---") {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind == "" {
			continue
		}
		rel.installed = append(rel.installed, strings.ToLower(meta.Kind)+"/"+meta.Metadata.Name)
	}
	t.Logf("helm installed %s", strings.Join(rel.installed, ", "))
	// helm's --wait counts a Deployment of 1 with maxUnavailable 1 as ready
	// at once: wait for the pods themselves.
	nodes, err := env.kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := 1 + len(nodes.Items) // the controller, a node plugin on every node
	var pods *corev1.PodList
	eventually(t, 3*time.Minute, fmt.Sprintf("the controller and %d node pods Running and Ready", len(nodes.Items)), func(ctx context.Context) (bool, string, error) {
		var err error
		if pods, err = env.kube.CoreV1().Pods(helmNamespace).List(ctx, metav1.ListOptions{}); err != nil {
			return false, "", err
		}
		var states []string
		ready := 0
		for _, p := range pods.Items {
			ok := p.Status.Phase == corev1.PodRunning
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
					ok = false
				}
			}
			if ok {
				ready++
			}
			states = append(states, p.Name+": "+describePod(ctx, &p))
		}
		return ready == want && len(pods.Items) == want, strings.Join(states, "; "), nil
	})
	t.Logf("the controller and node pods Ready %.1fs after helm install began", time.Since(start).Seconds())
	for _, p := range pods.Items {
		var images []string
		for _, c := range p.Spec.Containers {
			images = append(images, c.Image)
		}
		t.Logf("pod %s on %s (host network %v, IP %s): %s", p.Name, p.Spec.NodeName, p.Spec.HostNetwork, p.Status.PodIP, strings.Join(images, ", "))
		if !p.Spec.HostNetwork && (p.Status.PodIP == "" || p.Status.PodIP == p.Status.HostIP) {
			t.Errorf("pod %s is not on the pod network: pod IP %q, host IP %q", p.Name, p.Status.PodIP, p.Status.HostIP)
		}
	}
	for _, n := range nodes.Items {
		eventually(t, time.Minute, "CSINode "+n.Name+" lists the driver (registered by the node pod itself)", func(ctx context.Context) (bool, string, error) {
			cn, err := env.kube.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			for _, d := range cn.Spec.Drivers {
				if d.Name == driverName {
					return true, fmt.Sprintf("node ID %s, topology keys %v", d.NodeID, d.TopologyKeys), nil
				}
			}
			return false, fmt.Sprintf("drivers %v", cn.Spec.Drivers), nil
		})
	}

	return rel
}

// sidecarTag is the tag hack/e2e.sh gave a sidecar's image (the version it
// built).
func sidecarTag(t *testing.T, name string) string {
	t.Helper()
	img, err := oci.Read(filepath.Join(env.images, name+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	_, tag, ok := strings.Cut(img.Name, ":")
	if !ok {
		t.Fatalf("image %s has no tag", img.Name)
	}
	return tag
}

// describeNamespace is what a person would look at when a release does not
// come up: the pods, their containers' states, the events.
func describeNamespace(namespace string) string {
	out, _ := kubectl(context.Background(), "-n", namespace, "get", "pods,deployments,daemonsets", "-o", "wide")
	ev, _ := kubectl(context.Background(), "-n", namespace, "get", "events", "--sort-by=.lastTimestamp")
	desc, _ := kubectl(context.Background(), "-n", namespace, "describe", "pods")
	return out + "\n" + ev + "\n" + desc
}

func helm(t *testing.T, args ...string) (string, error) {
	cmd := exec.CommandContext(t.Context(), filepath.Join(env.bin, "helm"), append(args, "--kubeconfig", env.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(env.dir, "helm-home/cache"),
		"HELM_CONFIG_HOME="+filepath.Join(env.dir, "helm-home/config"), "HELM_DATA_HOME="+filepath.Join(env.dir, "helm-home/data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// spareNodes are the nodes that came with the spare taint, by name.
func spareNodes(t *testing.T) []string {
	t.Helper()
	nodes, err := env.kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		for _, taint := range n.Spec.Taints {
			if taint.Key == spareTaint {
				out = append(out, n.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}
