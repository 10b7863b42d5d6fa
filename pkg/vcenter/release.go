package vcenter

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// Release is the vCenter the client talks to, as its ServiceContent names
// it (read at login: no round trip).
type Release struct {
	Version  string // "8.0.3"
	Build    string // "24022515"
	FullName string // "VMware vCenter Server 8.0.3 build-24022515"
}

func (r Release) String() string {
	if r.Version == "" {
		return "vCenter (release unknown)"
	}
	return fmt.Sprintf("vCenter %s (build %s)", r.Version, r.Build)
}

// Feature is something the driver offers only where vCenter has it.
type Feature int

const (
	// FeatureSnapshots: CnsCreateSnapshots, CnsDeleteSnapshots and
	// CnsQuerySnapshots (snapshots, and clones, which the driver makes
	// through a transient snapshot).
	FeatureSnapshots Feature = iota
)

// featureSince is the release that brought each feature: VMware's
// documentation of vSphere Container Storage Plug-in (its features by
// vSphere release): volume snapshots need vSphere 7.0 Update 3.
var featureSince = map[Feature]string{FeatureSnapshots: "7.0.3"}

// Has says whether the release has f. An unknown release (no version)
// is taken to have it: the call's MethodNotFound then says so.
func (r Release) Has(f Feature) bool {
	since, ok := featureSince[f]
	if !ok || r.Version == "" {
		return true
	}
	return !versionBefore(r.Version, since)
}

// methodSince names the vSphere release that brought a CNS method the
// driver calls, for the message of a MethodNotFound (same source as
// featureSince); a method not listed is said to need a later release.
var methodSince = map[string]string{
	"CnsCreateSnapshots": "vSphere 7.0 Update 3",
	"CnsDeleteSnapshots": "vSphere 7.0 Update 3",
	"CnsQuerySnapshots":  "vSphere 7.0 Update 3",
	"CnsExtendVolume":    "vSphere 7.0",
	"CnsQueryVolumeInfo": "vSphere 7.0",
	// File volumes (vSAN File Service shares) and their ACLs.
	"CnsConfigureVolumeACLs": "vSphere 7.0",
}

// methodDetail says what MethodNotFound means for the admin: which method
// this vCenter lacks and which release has it.
func methodDetail(fault any) string {
	var m *types.MethodNotFound
	switch f := fault.(type) {
	case types.MethodNotFound:
		m = &f
	case *types.MethodNotFound:
		m = f
	default:
		return ""
	}
	since, ok := methodSince[m.Method]
	if !ok {
		since = "a later vSphere release"
	}
	return fmt.Sprintf(" (this vCenter has no %s: it comes with %s; upgrade vCenter to use this feature)", m.Method, since)
}

// versionBefore compares dotted versions ("7.0.2" < "7.0.3"); parts that
// are not numbers compare as 0.
func versionBefore(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
