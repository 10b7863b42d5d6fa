package conformance

import (
	"path/filepath"
	"testing"
)

// TestReadJUnit reads a report of ginkgo's shape (cut from a run here):
// ran and run-time skips are kept with their reasons, specs not selected
// and the passing setup nodes are not.
func TestReadJUnit(t *testing.T) {
	r, err := ReadJUnit(filepath.Join("testdata", "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := [3]int{r.Count("passed"), r.Count("failed"), r.Count("skipped")}; got != [3]int{1, 1, 1} {
		t.Errorf("passed, failed, skipped = %v, want [1 1 1]: %+v", got, r.Cases)
	}
	const prefix = "External Storage [Driver: csi.vsphere.vmware.com] [Testpattern: Dynamic PV (default fs)] "
	want := map[string]Case{
		prefix + "capacity provides storage capacity information":                        {State: "failed", Message: "Timed out after 60.001s.", Seconds: 60.04},
		prefix + "provisioning should provision storage with pvc data source (ROX mode)": {State: "skipped", Message: `Driver "csi.vsphere.vmware.com" does not support ROX access mode - skipping`, Seconds: 0.01},
		prefix + "volumes should store data":                                             {State: "passed", Seconds: 24.5},
	}
	for _, c := range r.Cases {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected case %q", c.Name)
			continue
		}
		if c.State != w.State || c.Message != w.Message || c.Seconds != w.Seconds {
			t.Errorf("%s: %+v, want %+v", c.Name, c, w)
		}
	}
}
