package kube

import (
	"context"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// resync: the informer's periodic full pass over its cache (no API call):
// a node set that somehow drifted is put right within this.
const resync = 10 * time.Minute

// Nodes follows the CSINode objects and keeps, in a vcenter.NodeSet, the
// node IDs they give for driver: the BIOS UUIDs of the cluster's node
// VMs. A node counts once its node plugin has registered with kubelet
// (which writes its CSINode entry), and stops counting when the entry or
// the node goes. While the API server is unreachable the last known set
// stays (client-go's reflector keeps trying).
//
// It returns once the first listing is in (or ctx ends, or syncTimeout).
func Nodes(ctx context.Context, client kubernetes.Interface, driver string) (*vcenter.NodeSet, error) {
	set := vcenter.NewNodeSet()
	factory := informers.NewSharedInformerFactory(client, resync)
	inf := factory.Storage().V1().CSINodes()
	lister := inf.Lister()
	update := func() {
		list, err := lister.List(labels.Everything())
		if err != nil {
			klog.ErrorS(err, "Listing CSINodes from the informer's cache")
			return
		}
		set.Set(nodeIDs(list, driver))
	}
	onChange := func(any) { update() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onChange,
		UpdateFunc: func(_, obj any) { update() },
		DeleteFunc: onChange,
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if err := waitSynced(ctx, "CSINodes", inf.Informer().HasSynced); err != nil {
		factory.Shutdown()
		return nil, err
	}
	update()
	uuids, _ := set.Nodes()
	klog.InfoS("The cluster's nodes, from the CSINode objects of this driver", "driver", driver, "nodes", len(uuids))
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	return set, nil
}

// nodeIDs are the node IDs CSINodes give for driver.
func nodeIDs(list []*storagev1.CSINode, driver string) []string {
	var out []string
	for _, n := range list {
		for _, d := range n.Spec.Drivers {
			if d.Name == driver && d.NodeID != "" {
				out = append(out, d.NodeID)
			}
		}
	}
	return out
}
