package driver

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// errTooLarge: a volume larger than any datastore that may hold it
// (OutOfRange in codeFor).
var errTooLarge = errors.New("larger than any datastore")

// refusal is why a volume cannot be placed: its message is what a
// StorageClass author can act on; kind is the sentinel (vcenter's, or
// errTooLarge) that codeFor turns into the code, so placement chooses no
// codes itself.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// placement is where a volume may go: candidate datastores, best first, and
// a sentence that says why, for the logs and for a person watching.
type placement struct {
	Candidates []vcenter.Datastore
	Why        string
}

// usable reports whether a datastore may hold volumes of the policy (if any).
func usable(ds vcenter.Datastore, policy string) bool {
	return ds.Reachable && (policy == "" || ds.Compatible)
}

// place chooses datastores for a volume of size bytes. policy is the storage
// policy's name ("" for none), url the StorageClass's datastoreurl ("" for
// any). all are the datastores of the inventory, annotated for the policy.
// The errors are the ones a StorageClass author can act on.
func place(all []vcenter.Datastore, policy, url string, size int64) (placement, error) {
	forPolicy := ""
	if policy != "" {
		forPolicy = fmt.Sprintf(" for storage policy %q", policy)
	}
	if url != "" {
		return placeOn(all, policy, url, size)
	}
	var fit []vcenter.Datastore
	var maxCap, maxFree int64
	usableCount := 0
	for _, ds := range all {
		if !usable(ds, policy) {
			continue
		}
		usableCount++
		maxCap = max(maxCap, ds.CapacityBytes)
		maxFree = max(maxFree, ds.FreeBytes)
		if ds.FreeBytes >= size {
			fit = append(fit, ds)
		}
	}
	switch {
	case usableCount == 0 && policy != "":
		return placement{}, refuse(vcenter.ErrPolicyIncompatible,
			"no datastore is compatible with storage policy %q and reachable from every node VM (%s); "+
				"ask the vSphere admin to make the policy match a shared datastore, or use another policy",
			policy, explainRejections(all, policy))
	case usableCount == 0:
		return placement{}, refuse(vcenter.ErrInsufficientSpace,
			"no datastore is reachable from every node VM (%s)", explainRejections(all, ""))
	case size > maxCap:
		return placement{}, refuse(errTooLarge,
			"%s is larger than any datastore%s (the largest holds %s)", describeSize(size), forPolicy, describeSize(maxCap))
	case len(fit) == 0:
		return placement{}, refuse(vcenter.ErrInsufficientSpace,
			"no datastore%s has %s free (the most free is %s); free space on a compatible datastore or extend the policy to more datastores",
			forPolicy, describeSize(size), describeSize(maxFree))
	}
	sort.SliceStable(fit, func(i, j int) bool { return fit[i].FreeBytes > fit[j].FreeBytes })
	why := fmt.Sprintf("%s has the most free space (%s) of %d datastore(s)%s reachable from every node VM with room for %s",
		fit[0].Name, describeSize(fit[0].FreeBytes), len(fit), compatibleWith(policy), describeSize(size))
	return placement{Candidates: fit, Why: why}, nil
}

func compatibleWith(policy string) string {
	if policy == "" {
		return ""
	}
	return fmt.Sprintf(" compatible with %q", policy)
}

// placeOn checks the datastore a StorageClass names.
func placeOn(all []vcenter.Datastore, policy, url string, size int64) (placement, error) {
	var urls []string
	for _, ds := range all {
		urls = append(urls, ds.URL)
		if !sameURL(ds.URL, url) {
			continue
		}
		switch {
		case policy != "" && !ds.Compatible:
			return placement{}, refuse(vcenter.ErrPolicyIncompatible,
				"datastoreurl %s (%s) is not compatible with storage policy %q: %s",
				url, ds.Name, policy, orDefault(ds.Incompatible, "SPBM rejected it"))
		case !ds.Reachable:
			return placement{}, refuse(vcenter.ErrInvalidArgument,
				"datastoreurl %s (%s) is not reachable from every node VM: not mounted for %s",
				url, ds.Name, strings.Join(ds.Unreachable, ", "))
		case ds.CapacityBytes < size:
			return placement{}, refuse(errTooLarge,
				"%s is larger than datastore %s (%s)", describeSize(size), ds.Name, describeSize(ds.CapacityBytes))
		case ds.FreeBytes < size:
			return placement{}, refuse(vcenter.ErrInsufficientSpace,
				"datastore %s has %s free, not enough for %s", ds.Name, describeSize(ds.FreeBytes), describeSize(size))
		}
		return placement{Candidates: []vcenter.Datastore{ds},
			Why: fmt.Sprintf("%s is the datastore the StorageClass names (datastoreurl)", ds.Name)}, nil
	}
	sort.Strings(urls)
	return placement{}, refuse(vcenter.ErrInvalidArgument,
		"datastoreurl %s is not a datastore of this vCenter's configured datacenters; known: %s", url, strings.Join(urls, ", "))
}

func sameURL(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

func explainRejections(all []vcenter.Datastore, policy string) string {
	var parts []string
	for _, ds := range all {
		switch {
		case policy != "" && !ds.Compatible:
			parts = append(parts, fmt.Sprintf("%s: %s", ds.Name, orDefault(ds.Incompatible, "not compatible")))
		case !ds.Reachable:
			parts = append(parts, fmt.Sprintf("%s: not mounted for %s", ds.Name, strings.Join(ds.Unreachable, ", ")))
		}
	}
	if len(parts) == 0 {
		return "the inventory has no datastores"
	}
	return strings.Join(parts, "; ")
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
