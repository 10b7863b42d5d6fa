package sim

import (
	"sort"
)

// NeighbourVM is an unrelated VM as NeighbourVMs reports it.
type NeighbourVM struct {
	Name   string `json:"name"`
	Ref    string `json:"ref"`
	Kind   string `json:"kind"`   // NeighbourWorkload, NeighbourTemplate or NeighbourOtherNode
	Folder string `json:"folder"` // under the datacenter's VM folder, e.g. "Workloads/web"
	Pool   string `json:"pool"`   // its resource pool ("" for a template)
	Host   string `json:"host"`   // the host it was made on
	On     bool   `json:"on"`     // powered on when made
}

// NeighbourVMs lists the unrelated VMs as they were made.
func (s *Sim) NeighbourVMs() []NeighbourVM {
	ni := s.inv.neighbours
	if ni == nil {
		return nil
	}
	out := make([]NeighbourVM, 0, len(ni.vms))
	for _, v := range ni.vms {
		out = append(out, NeighbourVM{Name: v.name, Ref: v.ref.Value, Kind: v.kind, Folder: v.folder, Pool: v.pool, Host: v.host, On: v.on})
	}
	return out
}

// NeighboursInfo is what the neighbours are, for the control endpoint and
// the summary.
type NeighboursInfo struct {
	Options       Neighbours                `json:"options"`
	VMs           map[string]int            `json:"vms"` // by kind; "poweredOff" counts those made powered off
	OtherVolumes  int                       `json:"otherClusterVolumes"`
	OtherSnaps    int                       `json:"otherClusterSnapshots"`
	TasksStarted  map[NeighbourTaskKind]int `json:"tasksStarted"`
	WorkloadHosts []string                  `json:"workloadHosts"`
}

// NeighboursInfo says what the neighbours are now.
func (s *Sim) NeighboursInfo() NeighboursInfo {
	info := NeighboursInfo{Options: s.opts.Neighbours, VMs: map[string]int{}, TasksStarted: s.NeighbourTaskCounts()}
	for _, v := range s.NeighbourVMs() {
		info.VMs[v.Kind]++
		if !v.On && v.Kind != NeighbourTemplate {
			info.VMs["poweredOff"]++
		}
	}
	if s.nb != nil {
		vols := s.nb.otherVolumes()
		info.OtherVolumes = len(vols)
		for _, v := range vols {
			info.OtherSnaps += s.cns.snapshotCount(v)
		}
	}
	for _, h := range s.inv.hosts {
		if s.inv.neighbours != nil && h.cluster.Self == s.inv.neighbours.workload.Self {
			info.WorkloadHosts = append(info.WorkloadHosts, h.name)
		}
	}
	sort.Strings(info.WorkloadHosts)
	return info
}
