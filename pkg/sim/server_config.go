package sim

import (
	"fmt"
	"os"
	"strings"
)

// ConfigINI is a csi-vsphere.conf pointing at the simulator, TLS verified
// by thumbprint (no insecure-flag). With topology, it names the zone tag
// categories ([Labels] topology-categories) so the driver reports zones.
func (s *Sim) ConfigINI(clusterID string, topology bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Global]\n")
	fmt.Fprintf(&b, "cluster-id = %q\n\n", clusterID)
	fmt.Fprintf(&b, "[VirtualCenter %q]\n", s.Host())
	fmt.Fprintf(&b, "user = %q\n", s.Username())
	fmt.Fprintf(&b, "password = %q\n", s.Password())
	fmt.Fprintf(&b, "port = %q\n", fmt.Sprint(s.Port()))
	fmt.Fprintf(&b, "datacenters = %q\n", s.inv.dcName)
	fmt.Fprintf(&b, "thumbprint = %q\n", s.Thumbprint())
	if topology {
		fmt.Fprintf(&b, "\n[Labels]\ntopology-categories = %q\n", TopologyCategories)
	}
	return b.String()
}

// WriteConfig writes ConfigINI to path (mode 0600: it holds a password).
func (s *Sim) WriteConfig(path, clusterID string, topology bool) error {
	return os.WriteFile(path, []byte(s.ConfigINI(clusterID, topology)), 0o600)
}
