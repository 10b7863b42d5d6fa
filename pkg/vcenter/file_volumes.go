package vcenter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vsan"
	vsanmethods "github.com/vmware/govmomi/vsan/methods"
	vsantypes "github.com/vmware/govmomi/vsan/types"
	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
	"k8s.io/klog/v2"
)

// File volumes: CNS volumes of type FILE, each a vSAN File Service share
// on a vSAN datastore whose cluster runs File Service, mounted by the
// nodes over NFS. Which datastores can hold one is read when a file volume
// is to be made, not watched: a datastore's type and its hosts' cluster
// (one property read) and each vSAN cluster's File Service switch (one
// vSAN health call per cluster), kept fileSupportTTL.

// fileSupportTTL is how long what FileShareSupport found is used. An
// admin who switches File Service on sees a Pending claim bound within it.
const fileSupportTTL = time.Minute

// Access point keys of a vSAN file share (CnsVsanFileShareBackingDetails).
const (
	AccessPointNFSv41 = "NFSv4.1"
	AccessPointNFSv3  = "NFSv3"
)

// fileSupport caches FileShareSupport's answer.
type fileSupport struct {
	mu  sync.Mutex
	at  time.Time
	why map[string]string
}

// FileShareSupport says, per datastore ID, whether vSAN File Service can
// put a file share there ("") or why not.
func (c *client) FileShareSupport(ctx context.Context, fresh bool) (map[string]string, error) {
	c.files.mu.Lock()
	defer c.files.mu.Unlock()
	if !fresh && c.files.why != nil && time.Since(c.files.at) < fileSupportTTL {
		return c.files.why, nil
	}
	why, err := c.readFileSupport(ctx)
	if err != nil {
		return nil, err
	}
	c.files.why, c.files.at = why, time.Now()
	return why, nil
}

func (c *client) readFileSupport(ctx context.Context) (map[string]string, error) {
	inv := c.inv.Load()
	refs := inv.datastoreRefs()
	if len(refs) == 0 {
		return map[string]string{}, nil
	}
	hostSet := map[types.ManagedObjectReference]bool{}
	for _, ref := range refs {
		ds, _ := inv.datastore(ref.Value)
		for h, ok := range ds.mounts {
			if ok {
				hostSet[h] = true
			}
		}
	}
	// One read: the datastores' type, their hosts' parents and the names
	// of those parents (clusters).
	spec := types.PropertyFilterSpec{
		PropSet: []types.PropertySpec{
			{Type: "Datastore", PathSet: []string{"summary.type", "info"}},
			{Type: "HostSystem", PathSet: []string{"parent"}},
			{Type: "ClusterComputeResource", PathSet: []string{"name"}},
		},
	}
	for _, ref := range refs {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: ref})
	}
	toParent := &types.TraversalSpec{Type: "HostSystem", Path: "parent"}
	for h := range hostSet {
		spec.ObjectSet = append(spec.ObjectSet, types.ObjectSpec{Obj: h, SelectSet: []types.BaseSelectionSpec{toParent}})
	}
	res, err := property.DefaultCollector(c.conn.vim).RetrieveProperties(ctx, types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{spec}})
	if err != nil {
		return nil, fmt.Errorf("read the datastores' types and clusters: %w", mapFault(err, nil))
	}
	isVSAN := map[types.ManagedObjectReference]bool{}
	parent := map[types.ManagedObjectReference]types.ManagedObjectReference{}
	names := map[types.ManagedObjectReference]string{}
	for _, oc := range res.Returnval {
		for _, p := range oc.PropSet {
			switch v := p.Val.(type) {
			case string:
				if p.Name == "summary.type" && (v == string(types.HostFileSystemVolumeFileSystemTypeVsan)) {
					isVSAN[oc.Obj] = true
				}
				if p.Name == "name" {
					names[oc.Obj] = v
				}
			case *types.VsanDatastoreInfo, types.VsanDatastoreInfo:
				isVSAN[oc.Obj] = true
			case types.ManagedObjectReference:
				parent[oc.Obj] = v
			}
		}
	}
	// Each vSAN cluster's File Service.
	clusters := map[types.ManagedObjectReference]string{} // cluster → "" when on, else why not
	why := map[string]string{}
	for _, ref := range refs {
		ds, _ := inv.datastore(ref.Value)
		if !isVSAN[ref] {
			why[ref.Value] = "not a vSAN datastore (vSAN File Service puts file shares on vSAN datastores only)"
			continue
		}
		if u := c.opts.FileShareDatastoreURLs; len(u) > 0 && !slices.Contains(u, ds.url) {
			why[ref.Value] = fmt.Sprintf("not in targetvSANFileShareDatastoreURLs of csi-vsphere.conf (%s)", strings.Join(u, ", "))
			continue
		}
		cluster, ok := clusterOf(ds, parent)
		if !ok {
			why[ref.Value] = "its hosts are not in one vSphere cluster"
			continue
		}
		if cl := c.opts.FileShareClusters; len(cl) > 0 && !slices.Contains(cl, names[cluster]) {
			why[ref.Value] = fmt.Sprintf("its vSAN cluster %s is not in targetvSANFileShareClusters of csi-vsphere.conf (%s)", names[cluster], strings.Join(cl, ", "))
			continue
		}
		state, seen := clusters[cluster]
		if !seen {
			state = c.fileServiceState(ctx, cluster, names[cluster])
			clusters[cluster] = state
		}
		why[ref.Value] = state
	}
	klog.V(2).InfoS("Read which datastores can hold file shares", "datastores", len(refs), "vsanClusters", len(clusters))
	return why, nil
}

// clusterOf is the cluster of the hosts the datastore is mounted on (one
// cluster for all of them, or none).
func clusterOf(ds dsState, parent map[types.ManagedObjectReference]types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
	var cluster types.ManagedObjectReference
	for h, ok := range ds.mounts {
		if !ok {
			continue
		}
		p, known := parent[h]
		if !known || p.Type != "ClusterComputeResource" || (cluster.Value != "" && p != cluster) {
			return types.ManagedObjectReference{}, false
		}
		cluster = p
	}
	return cluster, cluster.Value != ""
}

// fileServiceState asks vSAN whether the cluster runs File Service: ""
// when it does, else why not.
func (c *client) fileServiceState(ctx context.Context, cluster types.ManagedObjectReference, name string) string {
	if name == "" {
		name = cluster.Value
	}
	res, err := vsanmethods.VsanClusterGetConfig(ctx, c.conn.vsan, &vsantypes.VsanClusterGetConfig{
		This: vsan.VsanVcClusterConfigSystemInstance, Cluster: cluster,
	})
	switch {
	case err != nil:
		klog.ErrorS(err, "Reading the cluster's vSAN configuration failed", "cluster", name)
		return fmt.Sprintf("the vSAN health service did not say whether cluster %s runs File Service: %v", name, mapFault(err, nil))
	case res.Returnval.Enabled != nil && !*res.Returnval.Enabled:
		return fmt.Sprintf("vSAN is not enabled on cluster %s", name)
	case res.Returnval.FileServiceConfig == nil || !res.Returnval.FileServiceConfig.Enabled:
		return fmt.Sprintf("vSAN File Service is not enabled on cluster %s (vSphere Client: the cluster > Configure > vSAN > Services > File Service)", name)
	}
	return ""
}

// fileCreateSpec is the CNS create spec of a file volume: a vSAN file share
// of the volume's size as soft quota, with the net permissions in order.
func fileCreateSpec(spec CreateSpec, sizeMB int64) (cnstypes.BaseCnsBackingObjectDetails, *cnstypes.CnsVSANFileCreateSpec) {
	perms := make([]vsanfstypes.VsanFileShareNetPermission, 0, len(spec.File.NetPermissions))
	for _, p := range spec.File.NetPermissions {
		perms = append(perms, vsanfstypes.VsanFileShareNetPermission{
			Ips:         p.IPs,
			Permissions: vsanfstypes.VsanFileShareAccessType(p.Access),
			AllowRoot:   !p.RootSquash,
		})
	}
	details := &cnstypes.CnsVsanFileShareBackingDetails{
		CnsFileBackingDetails: cnstypes.CnsFileBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB},
		},
	}
	return details, &cnstypes.CnsVSANFileCreateSpec{SoftQuotaInMb: sizeMB, Permission: perms}
}

// accessPoints reads a file volume's access points from its backing.
func accessPoints(b cnstypes.BaseCnsBackingObjectDetails) map[string]string {
	fs, ok := b.(*cnstypes.CnsVsanFileShareBackingDetails)
	if !ok || len(fs.AccessPoints) == 0 {
		return nil
	}
	out := make(map[string]string, len(fs.AccessPoints))
	for _, kv := range fs.AccessPoints {
		out[kv.Key] = kv.Value
	}
	return out
}
