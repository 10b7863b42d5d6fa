package sim

import (
	"fmt"
	"strings"

	"github.com/vmware/govmomi/units"
)

// Summary is a human-readable description of the simulator.
func (s *Sim) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vCenter simulator\n")
	fmt.Fprintf(&b, "  URL:         %s\n", s.URL())
	fmt.Fprintf(&b, "  user:        %s\n", s.Username())
	fmt.Fprintf(&b, "  thumbprint:  %s\n", s.Thumbprint())
	fmt.Fprintf(&b, "  datacenter:  %s\n", s.inv.dcName)
	fmt.Fprintf(&b, "  state dir:   %s (kept across restarts: %d volumes)\n", s.opts.Dir, s.cns.count())
	fmt.Fprintf(&b, "  latency:     %s\n", s.Latency().String())
	hosts := map[string]bool{}
	for _, d := range s.inv.datastores {
		for _, h := range d.hostNames {
			hosts[h] = true
		}
	}
	fmt.Fprintf(&b, "  hosts:       %s\n", strings.Join(sortedKeys(hosts), ", "))
	fmt.Fprintf(&b, "node VMs (%d):\n", len(s.inv.nodeList()))
	for _, n := range s.NodeVMs() {
		fmt.Fprintf(&b, "  %-14s uuid=%s host=%s zone=%s state=%s by-id=%s\n", n.Name, n.UUID, n.Host, n.Zone, n.State, n.ByIDDir)
	}
	fmt.Fprintf(&b, "datastores:\n")
	for _, d := range s.Datastores() {
		fmt.Fprintf(&b, "  %-14s %s size=%s free=%s hosts=%d policies=[%s]\n  %14s url=%s\n",
			d.Name, d.Ref, units.ByteSize(d.CapacityBytes), units.ByteSize(d.FreeBytes), len(d.Hosts),
			strings.Join(d.Policies, ", "), "", d.URL)
	}
	fmt.Fprintf(&b, "storage policies:\n")
	for _, p := range s.policies.order {
		fmt.Fprintf(&b, "  %-40s id=%s datastores=[%s]\n", p.name, p.id, strings.Join(p.datastores, ", "))
	}
	s.neighboursSummary(&b)
	return b.String()
}

// neighboursSummary says what the neighbours are, when there are some.
func (s *Sim) neighboursSummary(b *strings.Builder) {
	if s.nb == nil {
		return
	}
	info := s.NeighboursInfo()
	o := info.Options
	fmt.Fprintf(b, "neighbours (a shared vCenter; seed %d):\n", o.Seed)
	fmt.Fprintf(b, "  VMs:         %d not ours: %d workloads (%d powered off) in Workloads/<role>, %d templates in Templates, %d node VMs of %s in Other-K8s\n",
		o.VMs, info.VMs[NeighbourWorkload], info.VMs["poweredOff"], info.VMs[NeighbourTemplate], info.VMs[NeighbourOtherNode], o.OtherClusterID)
	fmt.Fprintf(b, "  workload cluster %s: hosts %s; %s shared, each host a local wl-local-N of its own\n",
		workloadCluster, strings.Join(info.WorkloadHosts, ", "), workloadSharedDatastore)
	fmt.Fprintf(b, "  other cluster %s (same vCenter user): %d volumes, %d snapshots\n", o.OtherClusterID, info.OtherVolumes, info.OtherSnaps)
	user := o.User
	if user == "" {
		user = s.Username()
	}
	fmt.Fprintf(b, "  background tasks: %g a minute: DRS migrations (ours too), Storage vMotions by %s, backup snapshots by %s, scheduled power operations, %s's CNS calls\n",
		o.TasksPerMinute, user, BackupUser, o.OtherClusterID)
}
