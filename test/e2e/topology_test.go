package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	zoneKey   = "topology.csi.vmware.com/k8s-zone"
	regionKey = "topology.csi.vmware.com/k8s-region"
	// The e2e node plays the embedded vCenter's node VM k8s-node-b-1, on a
	// host of the zone-b cluster; zone-b-ds is the one datastore there.
	nodeZone      = "zone-b"
	otherZone     = "zone-a"
	zoneDatastore = "zone-b-ds"
)

// TestTopologyNode: the node plugin learned its zone from the vSphere tags
// of its VM's host cluster, and kubelet published it: CSINode lists the
// topology keys and the Node carries the zone and region labels.
func TestTopologyNode(t *testing.T) {
	n, err := env.kube.CoreV1().Nodes().Get(t.Context(), env.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Labels[zoneKey]; got != nodeZone {
		t.Errorf("node %s label %s = %q, want %q (labels: %v)", env.node, zoneKey, got, nodeZone, n.Labels)
	}
	if got := n.Labels[regionKey]; got == "" {
		t.Errorf("node %s has no %s label (labels: %v)", env.node, regionKey, n.Labels)
	}
	cn, err := env.kube.StorageV1().CSINodes().Get(t.Context(), env.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cn.Spec.Drivers {
		if d.Name == driverName {
			if !contains(d.TopologyKeys, zoneKey) || !contains(d.TopologyKeys, regionKey) {
				t.Errorf("CSINode %s driver %s topology keys %v, want %s and %s", env.node, driverName, d.TopologyKeys, zoneKey, regionKey)
			}
			return
		}
	}
	t.Errorf("CSINode %s does not list %s", env.node, driverName)
}

// TestTopologyWaitForFirstConsumer: a WaitForFirstConsumer class
// (gold-zonal-sc of deploy/examples/topology.yaml) provisions
// nothing until a pod uses the claim, then places the volume in the zone of
// the node the pod was scheduled to: the PV's node affinity names that
// zone and the CNS volume is on that zone's datastore, although
// Gold-compatible datastores exist in the other zone too.
func TestTopologyWaitForFirstConsumer(t *testing.T) {
	vc := connectVCenter(t)
	const claim, podName = "e2e-wffc", "e2e-wffc"
	applyTopologyExample(t)
	createPVC(t, pvcObject(claim, "gold-zonal-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	// No consumer: the claim waits, and no volume is made for it.
	eventually(t, time.Minute, "PVC "+claim+" waiting for its first consumer", func(ctx context.Context) (bool, string, error) {
		ev := eventsOf(ctx, "PersistentVolumeClaim", claim)
		pvc, err := env.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if pvc.Status.Phase != corev1.ClaimPending {
			t.Fatalf("PVC %s is %s before any pod uses it", claim, pvc.Status.Phase)
		}
		return strings.Contains(ev, "WaitForFirstConsumer"), "events: " + ev, nil
	})

	cleanupPod(t, podName)
	runPod(t, podObject(podName, claim, `set -e; echo zoned > /data/f; sync`, false))
	pv := waitBound(t, claim)
	zones := affinityValues(pv, zoneKey)
	if len(zones) != 1 || zones[0] != nodeZone {
		t.Errorf("PV %s node affinity on %s: %v, want [%s] (the zone of node %s)", pv.Name, zoneKey, zones, nodeZone, env.node)
	}
	vol, err := vc.volume(t.Context(), pv.Spec.CSI.VolumeHandle)
	if err != nil || vol == nil {
		t.Fatalf("CNS volume %s: %v (found %v)", pv.Spec.CSI.VolumeHandle, err, vol != nil)
	}
	ds := simDatastores(t)[vol.DatastoreUrl]
	if ds.name != zoneDatastore {
		t.Errorf("CNS volume %s is on %s, want %s, the %s datastore", vol.VolumeId.Id, ds.name, zoneDatastore, nodeZone)
	}
	t.Logf("pod on %s (zone %s) -> PV %s with affinity %v on %s", env.node, nodeZone, pv.Name, zones, ds.name)
	deletePod(t, podName, pv.Name)
	deletePVC(t, claim, pv.Name)
}

// TestTopologyOtherZone: a class restricted (allowedTopologies) to the zone
// the node is not in (gold-zone-a-sc of deploy/examples/topology.yaml) gets a volume there, and the scheduler keeps a pod
// using it off the node: the pod stays Pending with a volume node affinity
// conflict instead of attaching a disk its host can't reach.
func TestTopologyOtherZone(t *testing.T) {
	vc := connectVCenter(t)
	const claim, podName = "e2e-zone-a", "e2e-zone-a"
	applyTopologyExample(t)
	createPVC(t, pvcObject(claim, "gold-zone-a-sc", "1Gi", corev1.ReadWriteOnce, corev1.PersistentVolumeFilesystem))
	pv := waitBound(t, claim)
	if zones := affinityValues(pv, zoneKey); len(zones) != 1 || zones[0] != otherZone {
		t.Errorf("PV %s node affinity on %s: %v, want [%s]", pv.Name, zoneKey, zones, otherZone)
	}
	vol, err := vc.volume(t.Context(), pv.Spec.CSI.VolumeHandle)
	if err != nil || vol == nil {
		t.Fatalf("CNS volume %s: %v (found %v)", pv.Spec.CSI.VolumeHandle, err, vol != nil)
	}
	if ds := simDatastores(t)[vol.DatastoreUrl]; ds.name == zoneDatastore || ds.name == "" {
		t.Errorf("CNS volume %s is on %q, want a %s datastore", vol.VolumeId.Id, ds.name, otherZone)
	}

	cleanupPod(t, podName)
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), podObject(podName, claim, "true", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "pod "+podName+" unschedulable for its volume's zone", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Spec.NodeName != "" {
			t.Fatalf("pod %s was scheduled to %s (zone %s) with a %s volume", podName, p.Spec.NodeName, nodeZone, otherZone)
		}
		ev := eventsOf(ctx, "Pod", podName)
		return strings.Contains(ev, "FailedScheduling") && strings.Contains(ev, "node affinity"), fmt.Sprintf("phase %s; events: %s", p.Status.Phase, ev), nil
	})
	deletePod(t, podName)
	deletePVC(t, claim, pv.Name)
}

// applyTopologyExample applies deploy/examples/topology.yaml (the classes
// gold-zonal-sc and gold-zone-a-sc) and deletes it when the test ends.
func applyTopologyExample(t *testing.T) {
	example := filepath.Join(env.root, "deploy/examples/topology.yaml")
	mustKubectl(t, "apply", "-f", example)
	t.Cleanup(func() { _, _ = kubectl(context.Background(), "delete", "--ignore-not-found", "-f", example) })
}

// affinityValues are the values the PV's required node affinity allows for key.
func affinityValues(pv *corev1.PersistentVolume, key string) []string {
	var out []string
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return nil
	}
	for _, term := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Key == key {
				out = append(out, e.Values...)
			}
		}
	}
	return out
}
