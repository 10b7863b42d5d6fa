package sim

import (
	"fmt"
	"sync"

	"k8s.io/klog/v2"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vsan"
	vsanmethods "github.com/vmware/govmomi/vsan/methods"
	vsantypes "github.com/vmware/govmomi/vsan/types"
)

// vsanSystem is the vSAN health service's cluster configuration system
// (/vsanHealth, VsanVcClusterConfigSystem): VsanClusterGetConfig reports,
// per cluster, whether vSAN is on (a cluster with a vSAN datastore) and
// whether vSAN File Service is; VsanClusterReconfig switches File Service
// on or off, as an admin does in the vSphere Client. File Service is on
// where vSAN is, unless switched off; the switch is kept across restarts.
type vsanSystem struct {
	types.ManagedObjectReference

	inv   *inventory
	store *store

	mu  sync.Mutex
	off map[types.ManagedObjectReference]bool // clusters whose File Service is off
}

// clusterRecord is a cluster whose configuration is not as seeded.
type clusterRecord struct {
	FileServiceOff bool `json:"fileServiceOff,omitempty"`
}

func newVsanSystem(inv *inventory, st *store) *vsanSystem {
	return &vsanSystem{
		ManagedObjectReference: vsan.VsanVcClusterConfigSystemInstance,
		inv:                    inv,
		store:                  st,
		off:                    map[types.ManagedObjectReference]bool{},
	}
}

func (s *vsanSystem) register(svc *simulator.Service) {
	r := simulator.NewRegistry()
	r.Namespace = vsan.Namespace
	r.Path = vsan.Path
	r.Put(s)
	svc.RegisterSDK(r)
}

// vsanOn says whether the cluster has a vSAN datastore.
func (s *vsanSystem) vsanOn(cluster types.ManagedObjectReference) bool {
	for _, d := range s.inv.datastores {
		if d.vsan && d.cluster == cluster {
			return true
		}
	}
	return false
}

func (s *vsanSystem) fileServiceOn(cluster types.ManagedObjectReference) bool {
	if !s.vsanOn(cluster) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.off[cluster]
}

func (s *vsanSystem) isCluster(ref types.ManagedObjectReference) bool {
	return ref.Type == "ClusterComputeResource" && (ref == s.inv.zoneA || ref == s.inv.zoneB)
}

// VsanClusterGetConfig reports the cluster's vSAN and File Service state.
func (s *vsanSystem) VsanClusterGetConfig(_ *simulator.Context, req *vsantypes.VsanClusterGetConfig) soap.HasFault {
	body := new(vsanmethods.VsanClusterGetConfigBody)
	if !s.isCluster(req.Cluster) {
		body.Fault_ = simulator.Fault(fmt.Sprintf("cluster %s not found", req.Cluster.Value), &types.ManagedObjectNotFound{Obj: req.Cluster})
		return body
	}
	on := s.vsanOn(req.Cluster)
	info := vsantypes.VsanConfigInfoEx{}
	info.Enabled = types.NewBool(on)
	if on {
		info.DefaultConfig = &types.VsanClusterConfigInfoHostDefaultInfo{Uuid: datastoreID("vsan-cluster/" + req.Cluster.Value)}
		info.FileServiceConfig = &vsantypes.VsanFileServiceConfig{Enabled: s.fileServiceOn(req.Cluster)}
	}
	body.Res = &vsantypes.VsanClusterGetConfigResponse{Returnval: info}
	return body
}

// VsanClusterReconfig takes the File Service part of a reconfiguration
// (the rest of vSAN's configuration is not modeled and is refused).
func (s *vsanSystem) VsanClusterReconfig(ctx *simulator.Context, req *vsantypes.VsanClusterReconfig) soap.HasFault {
	task := simulator.CreateTask(s, "vsanClusterReconfig", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if !s.isCluster(req.Cluster) {
			return nil, &types.ManagedObjectNotFound{Obj: req.Cluster}
		}
		fsc := req.VsanReconfigSpec.FileServiceConfig
		if fsc == nil {
			return nil, &types.NotSupported{}
		}
		if fsc.Enabled && !s.vsanOn(req.Cluster) {
			return nil, &types.InvalidState{}
		}
		return nil, s.setFileService(req.Cluster, fsc.Enabled)
	})
	return &vsanmethods.VsanClusterReconfigBody{Res: &vsantypes.VsanClusterReconfigResponse{Returnval: task.Run(ctx)}}
}

func (s *vsanSystem) setFileService(cluster types.ManagedObjectReference, on bool) types.BaseMethodFault {
	s.mu.Lock()
	s.off[cluster] = !on
	s.mu.Unlock()
	var err error
	if on {
		err = s.store.del("clusters", cluster.Value)
	} else {
		err = s.store.put("clusters", cluster.Value, clusterRecord{FileServiceOff: true})
	}
	if err != nil {
		klog.ErrorS(err, "vCenter simulator: keeping the cluster's state failed", "cluster", cluster.Value)
		return &types.SystemError{Reason: err.Error()}
	}
	klog.InfoS("vCenter simulator: vSAN File Service switched", "cluster", entityName(s.inv.model.Map(), cluster), "enabled", on)
	return nil
}

// restore brings back the clusters whose File Service was switched off.
func (s *vsanSystem) restore() error {
	names, err := s.store.names("clusters")
	if err != nil {
		return err
	}
	for _, id := range names {
		var rec clusterRecord
		if err := s.store.get("clusters", id, &rec); err != nil {
			return err
		}
		s.off[types.ManagedObjectReference{Type: "ClusterComputeResource", Value: id}] = rec.FileServiceOff
	}
	return nil
}

// SetFileService switches vSAN File Service on or off on the cluster of
// zone ZoneA or ZoneB. Only a cluster with a vSAN datastore
// (zone A's vsanDatastore) can have it on.
func (s *Sim) SetFileService(zone string, on bool) error {
	var ref types.ManagedObjectReference
	switch zone {
	case ZoneA:
		ref = s.inv.zoneA
	case ZoneB:
		ref = s.inv.zoneB
	default:
		return fmt.Errorf("no cluster for zone %q: use %s or %s", zone, ZoneA, ZoneB)
	}
	if on && !s.vsan.vsanOn(ref) {
		return fmt.Errorf("cluster %s has no vSAN datastore: File Service can't be on", entityName(s.inv.model.Map(), ref))
	}
	if f := s.vsan.setFileService(ref, on); f != nil {
		return fmt.Errorf("%T", f)
	}
	return nil
}
