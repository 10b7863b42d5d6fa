//go:build e2e_chart

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ownData is the script of helmNodes' StatefulSet pods: the first pod of a
// name writes its name into its volume, every later one must find it there.
const ownData = `set -e
if [ -f /data/id ]; then
  [ "$(cat /data/id)" = "$POD_NAME" ] || { echo "/data/id is $(cat /data/id), want $POD_NAME"; exit 1; }
else
  echo "$POD_NAME" > /data/id; sync
fi
touch /tmp/ready
exec sleep 100000`

// helmNodes: volumes through several nodes, each a kubelet with its own
// containerd, root directory, network namespace and address, playing its
// own node VM. In order: a claim follows its pod into either zone; two pods
// on two nodes share a ReadWriteMany file volume; a pod's
// volume moves from node 1 to node 2 (vCenter shows the disk leave VM 1 for
// VM 2); a StatefulSet of 3 spread over the nodes, every pod replaced, each
// finding its own data; a drain of 10 volumes (its time is printed, not
// asserted); last, node 2 lost without warning (kubelet killed, its VM
// powered off, the out-of-service taint an admin applies): its pod runs on
// node 1 with its data and nothing stays attached to the dead VM.
func helmNodes(t *testing.T) {
	t.Helper()
	spare := spareNodes(t)
	if len(spare) < 2 {
		t.Errorf("%d spare nodes (%v): hack/e2e.sh starts 2 for the helm phase (E2E_SPARE_NODES)", len(spare), spare)
		return
	}
	for _, n := range spare {
		mustKubectl(t, "taint", "node", n, spareTaint+"-")
	}
	node1, node2 := spare[0], spare[1]
	vm1, vm2 := vmOf(t, node1), vmOf(t, node2)
	// The controller knows its three nodes from the Kubernetes API (the
	// CSINode objects), not from the VMs of a vCenter that has hundreds.
	controllerNodeVMs(t, 1+len(spare))
	controllerSynced(t)
	vc := connectVCenter(t)
	class := "gold-sc" // WaitForFirstConsumer (the values in TestHelm)

	// Zones: a claim's volume is made in the zone of the node its pod was
	// scheduled to.
	for _, n := range []string{env.node, node1} {
		claim := "zone-" + n
		createPVC(t, pvcObject(claim, class, "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
		cleanupPod(t, claim)
		runPod(t, podOn(n, claim, claim, `set -e; echo zone > /data/f; sync`))
		pv := waitBound(t, claim)
		want := nodeLabel(t, n, zoneKey)
		if zones := affinityValues(pv, zoneKey); len(zones) != 1 || zones[0] != want {
			t.Errorf("claim %s of a pod on %s (zone %s): PV node affinity %v", claim, n, want, zones)
		}
		deletePod(t, claim, pv.Name)
		deletePVC(t, claim, pv.Name)
	}

	// ReadWriteMany: a pod on node 1 and one on node 2 share a file volume,
	// each node's plugin pod mounting the share over NFS from its own
	// network namespace.
	rwxAcrossNodes(t, class, node1, node2)

	// A pod's volume moves from node 1 to node 2.
	const moving = "moving"
	createPVC(t, pvcObject(moving, class, "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	cleanupPod(t, "mover-1")
	runPod(t, podOn(node1, "mover-1", moving, `set -e; echo "$(hostname) was here" > /data/f; sync`))
	pv := waitBound(t, moving)
	id := pv.Spec.CSI.VolumeHandle
	if got := attachedTo(t, vc, id); !slices.Equal(got, []string{vm1}) {
		t.Errorf("volume %s on node VMs %v while its pod ran on %s, want [%s]", id, got, node1, vm1)
	}
	deletePod(t, "mover-1", pv.Name)
	mustKubectl(t, "cordon", node1)
	cleanupPod(t, "mover-2")
	start := time.Now()
	runPod(t, podOn(node2, "mover-2", moving, `set -e; grep -q "was here" /data/f; echo moved >> /data/f; sync`))
	t.Logf("the volume moved from %s to %s: the pod there ran to completion %.1fs after it was created", node1, node2, time.Since(start).Seconds())
	if got := attachedTo(t, vc, id); !slices.Equal(got, []string{vm2}) {
		t.Errorf("volume %s on node VMs %v after its pod moved to %s, want [%s] (detached from %s)", id, got, node2, vm2, vm1)
	}
	deletePod(t, "mover-2", pv.Name)
	mustKubectl(t, "uncordon", node1)
	if got := attachedTo(t, vc, id); len(got) != 0 {
		t.Errorf("volume %s still on node VMs %v with no pod using it", id, got)
	}

	// An in-tree vSphere PV moves from node 1 to node 2 (zone-a, where
	// vsanDatastore is).
	inTreeAcrossNodes(t, node1, node2, "vsanDatastore")

	// A StatefulSet of 3 spread over the 3 nodes; every pod replaced.
	spreadStatefulSet(t)

	// A drain of 10 volumes: all on node 1, node 1 drained, all Running on node 2.
	drain(t, node1, node2, vc)

	// Node 2 lost, with the moving volume in use.
	nodeLost(t, node2, node1, moving, pv.Name, id, vc)
}

// rwxAcrossNodes: a ReadWriteMany claim of the chart's class (a CNS file
// volume, a vSAN file share) used at the same time by a pod on node1 and
// one on node2, which see each other's writes; the share goes with the
// claim.
func rwxAcrossNodes(t *testing.T, class, node1, node2 string) {
	t.Helper()
	const claim = "shared-across-nodes"
	createPVC(t, pvcObject(claim, class, "1Gi", corev1.ReadWriteMany, corev1.PersistentVolumeFilesystem))
	token := shareThroughTwoPods(t, claim, node1, node2)
	pv := waitBound(t, claim)
	sh := shareOf(t, pv.Spec.CSI.VolumeHandle)
	t.Logf("through file volume %s, share %s at %s", sh.VolumeID, sh.Name, sh.AccessPoints["NFSv4.1"])
	checkShareHolds(t, sh, token)
	deletePod(t, "rwx-writer", pv.Name)
	deletePod(t, "rwx-reader", pv.Name)
	deletePVC(t, claim, pv.Name)
	waitShareGone(t, sh)
}

// vmOf is the node VM a node plays (cluster.json).
func vmOf(t *testing.T, node string) string {
	t.Helper()
	n, ok := env.cluster.Node(node)
	if !ok {
		t.Fatalf("node %s is not in cluster.json", node)
	}
	return n.VM
}

func nodeLabel(t *testing.T, node, key string) string {
	t.Helper()
	n, err := env.kube.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels[key]
}

// podOn is podObject placed on one node.
func podOn(node, name, claim, script string) *corev1.Pod {
	p := podObject(name, claim, script, false)
	p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	return p
}

// attachedTo names the node VMs whose devices include the volume's disk, as
// vCenter reports them (not the driver, not Kubernetes).
func attachedTo(t *testing.T, vc *vcenter, volumeID string) []string {
	t.Helper()
	ctx := t.Context()
	m := view.NewManager(vc.vim)
	v, err := m.CreateContainerView(ctx, vc.vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Destroy(context.Background()) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.hardware.device"}, &vms); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, vm := range vms {
		if vm.Config == nil {
			continue
		}
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && diskVolumeID(disk) == volumeID {
				out = append(out, vm.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// diskVolumeID is the CNS volume (first-class disk) a VM's disk is.
func diskVolumeID(d *types.VirtualDisk) string {
	if d.VDiskId != nil && d.VDiskId.Id != "" {
		return d.VDiskId.Id
	}
	if b, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
		if f := b.GetVirtualDeviceFileBackingInfo().FileName; strings.Contains(f, "fcd/") {
			return strings.TrimSuffix(filepath.Base(f), ".vmdk")
		}
	}
	return ""
}

// spreadStatefulSet: 3 replicas, at most one per node; every pod deleted at
// once; each replacement finds its own data (the volumes of zone-a may
// come back on the other zone-a node).
func spreadStatefulSet(t *testing.T) {
	t.Helper()
	const name = "spread"
	sts := statefulSet(name, 3, "gold-sc", ownData)
	sts.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
	}}
	claims := createStatefulSetOf(t, sts)
	waitReady(t, name, 3)
	before := podNodes(t, name)
	if len(unique(before)) != 3 {
		t.Errorf("StatefulSet %s: pods on %v, want one on each of the 3 nodes", name, before)
	}
	var pvs []string
	for _, c := range claims {
		pvs = append(pvs, waitBound(t, c).Name)
	}
	mustKubectl(t, "delete", "pods", "-l", "app="+name, "--wait=false")
	waitAppPods(t, name, 3, 4*time.Minute, "StatefulSet "+name+": 3 new pods Ready, each with its own data", func(p *corev1.Pod) bool {
		return p.DeletionTimestamp == nil && !slices.Contains(before, p.Name+"@"+string(p.UID))
	})
	t.Logf("StatefulSet %s: before %v, after %v", name, before, podNodes(t, name))
	deleteStatefulSet(t, name, claims, pvs, 2*time.Minute)
}

// podNodes lists "pod on node" of a StatefulSet's pods, and "pod@uid" to
// tell replacements apart.
func podNodes(t *testing.T, app string) []string {
	t.Helper()
	pods, err := env.kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Spec.NodeName, p.Name+"@"+string(p.UID))
	}
	return out
}

// unique counts the nodes in podNodes' answer.
func unique(pn []string) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < len(pn); i += 2 {
		out[pn[i]] = true
	}
	return out
}

// drain: a StatefulSet of 10 on node from (the other nodes cordoned), then
// kubectl drain of that node under the realistic vCenter latency model: the
// time until all 10 run on node to, each with its own data, is printed.
func drain(t *testing.T, from, to string, vc *vcenter) {
	t.Helper()
	const name, n = "drain", 10
	for _, other := range []string{to, env.node} {
		mustKubectl(t, "cordon", other)
	}
	claims := createStatefulSetOf(t, statefulSet(name, n, "gold-sc", ownData))
	waitReady(t, name, n)
	var pvs, ids []string
	for _, c := range claims {
		pv := waitBound(t, c)
		pvs, ids = append(pvs, pv.Name), append(ids, pv.Spec.CSI.VolumeHandle)
	}
	for _, other := range []string{to, env.node} {
		mustKubectl(t, "uncordon", other)
	}
	// As a user's vCenter takes its time: the realistic latency model
	// (pkg/sim/latency.go) for the drain itself.
	simControl(t, "PUT", "/latency", "realistic")
	t.Cleanup(func() { simControl(t, "PUT", "/latency", "none") })
	start := time.Now()
	mustKubectl(t, "drain", from, "--ignore-daemonsets", "--force", "--grace-period=1", "--timeout=5m")
	drained := time.Since(start)
	waitAppPods(t, name, n, 5*time.Minute, fmt.Sprintf("the %d pods of %s Ready on %s", n, name, to), func(p *corev1.Pod) bool {
		return p.Spec.NodeName == to && p.DeletionTimestamp == nil
	})
	took := time.Since(start)
	simControl(t, "PUT", "/latency", "none")
	t.Logf("drain of %s with %d volumes under realistic vCenter latency: kubectl drain %.1fs, all %d pods Ready on %s with their data %.1fs after the drain began", from, n, drained.Seconds(), n, to, took.Seconds())
	mustKubectl(t, "uncordon", from)
	for _, id := range ids {
		if got := attachedTo(t, vc, id); !slices.Equal(got, []string{vmOf(t, to)}) {
			t.Errorf("volume %s on node VMs %v after the drain, want [%s]", id, got, vmOf(t, to))
		}
	}
	deleteStatefulSet(t, name, claims, pvs, 3*time.Minute)
}

// nodeLost: a pod uses the claim on node lost; its kubelet is killed and
// its VM powered off; the admin applies the out-of-service taint; the pod
// is gone and its volume detached from the dead VM, and a new pod on
// survivor finds the data. The lost node is then deleted, as an admin does.
func nodeLost(t *testing.T, lost, survivor, claim, pv, id string, vc *vcenter) {
	t.Helper()
	const user = "lost-user"
	cleanupPod(t, user)
	pod := podOn(lost, user, claim, `set -e; echo before-loss >> /data/f; sync; touch /tmp/ready; exec sleep 100000`)
	pod.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}}, PeriodSeconds: 1}
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "pod "+user+" Ready on "+lost, func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, user, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return isReady(p), describePod(ctx, p), nil
	})

	// Without warning: kubelet dies, the VM powers off.
	lostNode, _ := env.cluster.Node(lost)
	killPID(t, lostNode.Kubelet)
	simControl(t, "POST", "/vms/"+vmOf(t, lost)+"/power-off", "")
	start := time.Now()
	eventually(t, 3*time.Minute, "node "+lost+" NotReady", func(ctx context.Context) (bool, string, error) {
		n, err := env.kube.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status != corev1.ConditionTrue, string(c.Status), nil
			}
		}
		return false, "no Ready condition", nil
	})
	notReady := time.Since(start)
	mustKubectl(t, "taint", "node", lost, "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
	deletePod(t, user, pv)
	if got := attachedTo(t, vc, id); len(got) != 0 {
		t.Errorf("volume %s still on node VMs %v after its node was lost", id, got)
	}
	cleanupPod(t, "after-loss")
	runPod(t, podOn(survivor, "after-loss", claim, `set -e; grep -q before-loss /data/f`))
	t.Logf("node %s lost: NotReady after %.1fs; its pod's volume detached and the data read on %s %.1fs after the loss", lost, notReady.Seconds(), survivor, time.Since(start).Seconds())
	deletePod(t, "after-loss", pv)
	deletePVC(t, claim, pv)
	mustKubectl(t, "delete", "node", lost, "--wait=false")
	// What is left bound to the dead node (its node plugin pod, which
	// tolerates every taint) goes as an admin removes it: kubelet will never
	// confirm, so --force (the pod GC would take it only after its 40 s
	// quarantine of pods on nodes that no longer exist).
	mustKubectl(t, "delete", "pods", "--all-namespaces", "--field-selector", "spec.nodeName="+lost, "--force", "--grace-period=0")
}

// killPID SIGKILLs a process hack/e2e.sh started (its record).
func killPID(t *testing.T, name string) {
	t.Helper()
	p, err := env.cluster.Running(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", name, p.PID, err)
	}
}

// mountTables are /proc/self/mountinfo and, for every node of the cluster
// that hack/e2e.sh runs in a mount namespace of its own, that namespace's.
func mountTables(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out[env.node] = string(b)
	// The nodes the API server has: a node deleted after it was lost (nodeLost) keeps what its
	// dead kubelet mounted, as a lost machine does.
	nodes, err := env.kube.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, api := range nodes.Items {
		n, ok := env.cluster.Node(api.Name)
		if !ok || n.Namespace == "" {
			continue
		}
		holder, err := env.cluster.Running(n.Namespace)
		if err != nil {
			continue // a node whose namespaces are gone has no mounts left
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", holder.PID)); err == nil {
			out[n.Name] = string(b)
		}
	}
	return out
}

// controllerNodeVMs waits until the chart's controller says, in its metric
// vsphere_csi_cluster_node_vms, that it knows want node VMs.
func controllerNodeVMs(t *testing.T, want int) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("the controller knowing %d node VMs", want), func(ctx context.Context) (bool, string, error) {
		vals, err := controllerMetric(ctx, "vsphere_csi_cluster_node_vms")
		if len(vals) == 0 || err != nil {
			return false, fmt.Sprintf("vsphere_csi_cluster_node_vms not served (%v)", err), nil
		}
		return vals[0] == strconv.Itoa(want), "vsphere_csi_cluster_node_vms " + vals[0], nil
	})
}

// controllerSynced waits until one of the chart's controller replicas (the
// one holding the syncer's Lease, through its service account's RBAC) has
// done a full sync of CNS metadata.
func controllerSynced(t *testing.T) {
	t.Helper()
	eventually(t, 2*time.Minute, "a controller replica's full sync of CNS metadata", func(ctx context.Context) (bool, string, error) {
		vals, err := controllerMetric(ctx, "vsphere_csi_syncer_full_syncs_total")
		for _, v := range vals {
			if n, _ := strconv.ParseFloat(v, 64); n >= 1 {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("vsphere_csi_syncer_full_syncs_total: %v (%v)", vals, err), nil
	})
}

// controllerMetric reads a metric without labels from each controller
// pod's /metrics (the pods in list order; those that do not serve it are
// left out).
func controllerMetric(ctx context.Context, name string) ([]string, error) {
	pods, err := env.kube.CoreV1().Pods(helmNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
	if err != nil {
		return nil, err
	}
	var out []string
	var last error
	for _, p := range pods.Items {
		if p.Status.PodIP == "" {
			continue
		}
		url := fmt.Sprintf("http://%s:9809/metrics", p.Status.PodIP)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == name {
				out = append(out, f[1])
			}
		}
	}
	return out, last
}

// inTreeAcrossNodes (the chart phase, on its zone-a nodes): an in-tree PV
// written by a pod on node1 is read by a pod on node2 after node1's pod
// is gone; the disk moved from one node VM to the other through this
// driver.
func inTreeAcrossNodes(t *testing.T, node1, node2, datastore string) {
	t.Helper()
	const name = "legacy-intree-nodes"
	inTreeDiskWithData(t, datastore, name)
	pvName, claim := "intree-nodes-pv", "intree-nodes-claim"
	inTreeClaim(t, pvName, claim, fmt.Sprintf("[%s] kubevols/%s.vmdk", datastore, name))
	cleanupPod(t, "intree-on-1")
	runPod(t, podOn(node1, "intree-on-1", claim, `set -e
grep -q "written by the in-tree plugin's pod" /data/old
echo "written on $(hostname)" > /data/new; sync`))
	deletePod(t, "intree-on-1", pvName)
	cleanupPod(t, "intree-on-2")
	runPod(t, podOn(node2, "intree-on-2", claim, `set -e
grep -q "written by the in-tree plugin's pod" /data/old
grep -q "written on" /data/new`))
	deletePod(t, "intree-on-2", pvName)
	deletePVC(t, claim, "")
}
