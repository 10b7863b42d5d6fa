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

// TestClusterReady: the node is Ready and kubelet registered the driver
// through the node plugin's own registration socket.
func TestClusterReady(t *testing.T) {
	n, err := env.kube.CoreV1().Nodes().Get(t.Context(), env.node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", env.node, err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			t.Fatalf("node %s not Ready: %s", env.node, c.Message)
		}
	}
	csiNode, err := env.kube.StorageV1().CSINodes().Get(t.Context(), env.node, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CSINode %s: %v", env.node, err)
	}
	var found bool
	for _, d := range csiNode.Spec.Drivers {
		if d.Name == driverName {
			found = true
			t.Logf("CSINode %s: driver %s, node ID %s, allocatable %v", env.node, d.Name, d.NodeID, d.Allocatable)
			if d.Allocatable == nil || d.Allocatable.Count == nil || *d.Allocatable.Count != 59 {
				t.Errorf("CSINode allocatable = %v, want 59 volumes (NodeGetInfo's max)", d.Allocatable)
			}
		}
	}
	if !found {
		t.Fatalf("CSINode %s does not list %s: %+v", env.node, driverName, csiNode.Spec.Drivers)
	}
	sc, err := env.kube.StorageV1().StorageClasses().Get(t.Context(), "gold-sc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("gold-sc is not the default class: %v", sc.Annotations)
	}
}

// TestGettingStarted is the getting-started walkthrough through kubectl and a real kubelet: the
// seed's PVC on gold-sc binds to a Gold volume in vCenter carrying the
// claim's name; a pod writes, another pod reads it back; deleting the claim
// deletes the PV, the CNS volume and its data file.
func TestGettingStarted(t *testing.T) {
	// Not parallel: TestSnapshotRestoreClone's source is this same claim
	// of deploy/examples/pvc.yaml.
	vc := connectVCenter(t)
	const claim = "persistent-vmdk"
	cleanupPVC(t, claim)
	mustKubectl(t, "apply", "-f", filepath.Join(env.root, "deploy/examples/pvc.yaml"))
	pv := waitBound(t, claim)
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
		t.Fatalf("PV %s is not a %s volume: %+v", pv.Name, driverName, pv.Spec.PersistentVolumeSource)
	}
	id := pv.Spec.CSI.VolumeHandle
	if got := pv.Spec.Capacity.Storage().String(); got != "5Gi" {
		t.Errorf("PV capacity %s, want 5Gi", got)
	}
	if pv.Spec.CSI.FSType != "ext4" {
		t.Errorf("PV fsType %q, want ext4 (the provisioner's default)", pv.Spec.CSI.FSType)
	}
	t.Logf("PV %s: CNS volume %s", pv.Name, id)

	vol, err := vc.volume(t.Context(), id)
	if err != nil || vol == nil {
		t.Fatalf("CNS volume %s of PV %s: %v (found: %v)", id, pv.Name, err, vol != nil)
	}
	dss := simDatastores(t)
	ds, ok := dss[vol.DatastoreUrl]
	if !ok || !contains(ds.policies, "Gold") {
		t.Errorf("CNS volume %s is on %s (%s, policies %v): not a Gold-compatible datastore", id, vol.DatastoreUrl, ds.name, ds.policies)
	}
	if names := pvcNames(vol); !contains(names, ns+"/"+claim) {
		t.Errorf("CNS volume %s metadata names PVCs %v, want %s/%s", id, names, ns, claim)
	}
	files := dataFiles(t, id)
	if len(files) == 0 {
		t.Fatalf("no data file of volume %s under %s", id, env.cluster.VCenter.Dir)
	}
	t.Logf("CNS volume %s on %s (%s), data file %s", id, ds.name, vol.DatastoreUrl, files[0])

	token := fmt.Sprintf("written by pod 1 at %s", time.Now().Format(time.RFC3339Nano))
	cleanupPod(t, "getting-started-writer")
	runPod(t, podObject("getting-started-writer", claim,
		fmt.Sprintf(`set -e; grep -q " /data " /proc/mounts; echo %q > /data/hello; sync; cat /data/hello`, token), false))
	deletePod(t, "getting-started-writer", pv.Name)

	cleanupPod(t, "getting-started-reader")
	runPod(t, podObject("getting-started-reader", claim,
		fmt.Sprintf(`set -e; got="$(cat /data/hello)"; [ "$got" = %q ] || { echo "read back: $got"; exit 1; }`, token), false))
	deletePod(t, "getting-started-reader", pv.Name)

	deletePVC(t, claim, pv.Name)
	eventually(t, time.Minute, "CNS volume "+id+" and its data file gone", func(ctx context.Context) (bool, string, error) {
		v, err := vc.volume(ctx, id)
		if err != nil {
			return false, "", err
		}
		if v != nil {
			return false, "CNS still has the volume", nil
		}
		if f := dataFiles(t, id); len(f) > 0 {
			return false, "data files left: " + strings.Join(f, ", "), nil
		}
		return true, "", nil
	})
}
