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
	fmt.Fprintf(&b, "  thumbprint:  %s\n", s.thumb)
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
	fmt.Fprintf(&b, "node VMs (%d):\n", len(s.inv.nodes))
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
	return b.String()
}
