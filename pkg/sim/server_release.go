package sim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// The vCenter release the embedded vCenter says it is (ServiceContent.about)
// and answers as: a method that release does not have is MethodNotFound, as
// a real vCenter answers it. Build numbers: VMware KB 2143838 (build
// numbers and versions of VMware vCenter Server).

// DefaultRelease is a current, supported vCenter.
const DefaultRelease = "8.0.3"

type release struct {
	version, build string
	// since: the CNS methods this release lacks are those brought by a
	// later one (VMware's vSphere Container Storage Plug-in documentation:
	// volume snapshots with vSphere 7.0 Update 3).
	lacks []string
}

var releases = map[string]release{
	"7.0.2": {version: "7.0.2", build: "17694817", lacks: []string{"CnsCreateSnapshots", "CnsDeleteSnapshots", "CnsQuerySnapshots"}},
	"7.0.3": {version: "7.0.3", build: "18700403"},
	"8.0.0": {version: "8.0.0", build: "20519528"},
	"8.0.3": {version: "8.0.3", build: "24022515"},
}

// ReleaseNames lists the releases Options.Release takes.
func ReleaseNames() string {
	var names []string
	for n := range releases {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func lookupRelease(name string) (release, error) {
	if name == "" {
		name = DefaultRelease
	}
	r, ok := releases[name]
	if !ok {
		return release{}, fmt.Errorf("release %q: the embedded vCenter can be one of %s", name, ReleaseNames())
	}
	return r, nil
}

// apply makes the model's ServiceContent name the release.
func (r release) apply(m *simulator.Model) {
	a := &m.ServiceContent.About
	a.Version, a.Build = r.version, r.build
	a.FullName = fmt.Sprintf("VMware vCenter Server %s build-%s", r.version, r.build)
	a.ApiVersion = r.version + ".0"
}

// methodNotFound is the fault of a method the release lacks; nil when it
// has it.
func (r release) methodNotFound(method string, this types.ManagedObjectReference) types.BaseMethodFault {
	for _, m := range r.lacks {
		if m == method {
			return &types.MethodNotFound{Receiver: this, Method: method}
		}
	}
	return nil
}
