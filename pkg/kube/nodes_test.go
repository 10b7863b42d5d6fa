package kube

import (
	"context"
	"slices"
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

const driver = "csi.vsphere.vmware.com"

func csiNode(name string, drivers map[string]string) *storagev1.CSINode {
	n := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for d, id := range drivers {
		n.Spec.Drivers = append(n.Spec.Drivers, storagev1.CSINodeDriver{Name: d, NodeID: id})
	}
	return n
}

// waitNodes waits until the set holds want.
func waitNodes(t *testing.T, nodes interface {
	Nodes() ([]string, <-chan struct{})
}, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, changed := nodes.Nodes()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes %v, want %v", got, want)
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestNodesFollowCSINodes: the node set is the node IDs the CSINodes give
// for this driver (not another driver's, not a node without ours), kept
// current as nodes register, change and go. The API server here is
// client-go's fake: what is under test is the driver's reading of it;
// make e2e reads a real one.
func TestNodesFollowCSINodes(t *testing.T) {
	const u1, u2, u3 = "42000000-0000-0000-0000-000000000001", "42000000-0000-0000-0000-000000000002", "42000000-0000-0000-0000-000000000003"
	client := fake.NewClientset(
		csiNode("node-1", map[string]string{driver: u1, "ebs.csi.aws.com": "i-1"}),
		csiNode("node-2", map[string]string{"other.csi.example.com": "x"}),
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, err := Nodes(ctx, client, driver)
	if err != nil {
		t.Fatal(err)
	}
	waitNodes(t, nodes, u1)

	csi := client.StorageV1().CSINodes()
	if _, err := csi.Update(ctx, csiNode("node-2", map[string]string{driver: u2}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, nodes, u1, u2)
	if _, err := csi.Create(ctx, csiNode("node-3", map[string]string{driver: "VMware-42 00 00 00 00 00 00 00-00 00 00 00 00 00 00 03"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, nodes, u1, u2, u3)
	if err := csi.Delete(ctx, "node-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, nodes, u2, u3)
}

func TestConnectWithoutAPI(t *testing.T) {
	if inPod() {
		t.Skip("runs in a pod: the in-cluster configuration exists")
	}
	if _, err := Connect("", "test"); err != ErrNoAPI {
		t.Errorf("Connect without a kubeconfig outside a pod: %v, want ErrNoAPI", err)
	}
	if _, err := Connect("/nonexistent/kubeconfig", "test"); err == nil {
		t.Error("Connect with a kubeconfig that does not exist succeeded")
	}
}
