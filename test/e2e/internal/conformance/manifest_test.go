package conformance

// The test-driver manifests of Kubernetes' external storage e2e suite
// (test/e2e/conformance), checked without building the suite: they decode
// strictly, name capabilities the suite knows, and the files they point at
// exist and are what they say.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// capabilities are the suite's (k8s.io/kubernetes v1.34.4,
// test/e2e/storage/framework/testdriver.go, the Capability constants).
var capabilities = map[string]bool{
	"persistence": true, "block": true, "fsGroup": true, "volumeMountGroup": true, "exec": true,
	"snapshotDataSource": true, "groupSnapshot": true, "pvcDataSource": true, "multipods": true,
	"RWX": true, "controllerExpansion": true, "nodeExpansion": true, "offlineExpansion": true,
	"onlineExpansion": true, "volumeLimits": true, "singleNodeVolume": true, "topology": true,
	"capacity": true, "FSResizeFromSourceNotSupported": true, "readWriteOncePod": true,
	"multiplePVsSameID": true, "capReadOnlyMany": true,
}

// manifest is the part of the suite's driverDefinition the files use.
type manifest struct {
	StorageClass struct {
		FromName                        bool
		FromFile, FromExistingClassName string
	}
	SnapshotClass struct {
		FromName                        bool
		FromFile, FromExistingClassName string
	}
	VolumeAttributesClass struct {
		FromName                        bool
		FromFile, FromExistingClassName string
	}
	DriverInfo struct {
		Name                string
		SupportedSizeRange  struct{ Min, Max string }
		SupportedFsType     map[string]struct{}
		TopologyKeys        []string
		RequiredAccessModes []string
		Capabilities        map[string]bool
		StressTestOptions   *struct{ NumPods, NumRestarts int }
		// The other stress suites' options (k8s.io/kubernetes
		// test/e2e/storage/framework/testdriver.go).
		VolumeSnapshotStressTestOptions *struct{ NumPods, NumSnapshots int }
		VolumeModifyStressTestOptions   *struct{ NumPods int }
	}
}

func TestManifests(t *testing.T) {
	dir := filepath.Join("..", "..", "conformance")
	for _, name := range []string{"block.yaml", "file.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var m manifest
		if err := yaml.UnmarshalStrict(data, &m); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if m.DriverInfo.Name != "csi.vsphere.vmware.com" {
			t.Errorf("%s: driver %q", name, m.DriverInfo.Name)
		}
		if len(m.DriverInfo.Capabilities) == 0 {
			t.Errorf("%s: no capabilities", name)
		}
		for c := range m.DriverInfo.Capabilities {
			if !capabilities[c] {
				t.Errorf("%s: capability %q is not one the suite knows", name, c)
			}
		}
		for _, f := range []string{m.StorageClass.FromFile, m.SnapshotClass.FromFile, m.VolumeAttributesClass.FromFile} {
			if f == "" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if !strings.Contains(string(b), "csi.vsphere.vmware.com") {
				t.Errorf("%s: %s names another driver", name, f)
			}
		}
	}
}
