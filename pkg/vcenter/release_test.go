package vcenter

import "testing"

func TestReleaseHas(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    bool
	}{
		{"7.0.2", false}, {"7.0.3", true}, {"7.0.10", true}, {"6.7.3", false}, {"8.0.0", true}, {"8.0.3", true}, {"9.0", true}, {"", true},
	} {
		if got := (Release{Version: tc.version}).Has(FeatureSnapshots); got != tc.want {
			t.Errorf("vCenter %q has snapshots: %v, want %v", tc.version, got, tc.want)
		}
	}
}
