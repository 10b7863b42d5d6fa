package sim

import (
	"fmt"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// hostModel is one ESXi host of the inventory: which cluster it is in and
// which datastores it mounts. Fixed once the inventory is built.
type hostModel struct {
	name        string
	ref         types.ManagedObjectReference
	cluster     *simulator.ClusterComputeResource
	clusterName string
	zone        string
	datastores  []*dsModel
}

// mounts says whether the host mounts the datastore.
func (h *hostModel) mounts(ds types.ManagedObjectReference) bool {
	for _, d := range h.datastores {
		if d.ref == ds {
			return true
		}
	}
	return false
}

// HostInfo is an ESXi host as Hosts reports it.
type HostInfo struct {
	Name       string   `json:"name"`
	Ref        string   `json:"ref"`        // managed object ID, e.g. "host-21"
	Cluster    string   `json:"cluster"`    // name of its cluster
	Zone       string   `json:"zone"`       // its cluster's k8s-zone tag, "" when untagged
	Datastores []string `json:"datastores"` // names of the datastores it mounts
}

// Hosts lists every host with its cluster and the datastores it mounts:
// zone A's, zone B's and, with neighbours, the workload cluster's, whose
// hosts each mount a local datastore of their own.
func (s *Sim) Hosts() []HostInfo {
	out := make([]HostInfo, 0, len(s.inv.hosts))
	for _, h := range s.inv.hosts {
		hi := HostInfo{Name: h.name, Ref: h.ref.Value, Cluster: h.clusterName, Zone: h.zone}
		for _, d := range h.datastores {
			hi.Datastores = append(hi.Datastores, d.name)
		}
		out = append(out, hi)
	}
	return out
}

// listHosts builds inv.hosts from the clusters and the datastores' mounts.
func (inv *inventory) listHosts() {
	r := inv.model.Map()
	clusters := []types.ManagedObjectReference{inv.zoneA, inv.zoneB}
	if inv.neighbours != nil {
		clusters = append(clusters, inv.neighbours.workload.Self)
	}
	inv.hosts = nil
	for _, ref := range clusters {
		cl, ok := r.Get(ref).(*simulator.ClusterComputeResource)
		if !ok {
			continue
		}
		for _, h := range cl.Host {
			hm := &hostModel{name: entityName(r, h), ref: h, cluster: cl, clusterName: cl.Name, zone: inv.zoneOf(ref)}
			for _, d := range inv.datastores {
				for _, mh := range d.hosts {
					if mh == h {
						hm.datastores = append(hm.datastores, d)
					}
				}
			}
			inv.hosts = append(inv.hosts, hm)
		}
	}
}

// host finds a host by name.
func (inv *inventory) host(name string) (*hostModel, error) {
	for _, h := range inv.hosts {
		if h.name == name {
			return h, nil
		}
	}
	return nil, fmt.Errorf("no host %q", name)
}

// hostOf finds a host by reference.
func (inv *inventory) hostOf(ref types.ManagedObjectReference) (*hostModel, bool) {
	for _, h := range inv.hosts {
		if h.ref == ref {
			return h, true
		}
	}
	return nil, false
}
