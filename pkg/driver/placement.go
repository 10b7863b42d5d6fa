package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Placement: where a new volume goes and why, for block and file volumes
// alike, and the same eligibility for GetCapacity. Every decision and every
// sentence that explains one is in this file, in the order a CreateVolume
// meets them (createVolume in controller.go, createFileVolume in
// file_volumes.go):
//
//  1. the zones: placeInTopology tries the requested topology segments,
//     preferred first (requestedSegments);
//  2. eligibility: eligible says which datastores are reachable from the
//     node VMs of a segment (matches), or from every node VM without
//     topology;
//  3. ranking: place keeps the usable ones (reachable, compatible with the
//     storage policy) with room, the most free first; placeOn checks the
//     one a StorageClass names (datastoreurl);
//  4. file volumes: before all that, fileDatastores keeps the datastores
//     that can hold a vSAN file share and says why each other one can't
//     (noFileDatastore);
//  5. capacity: GetCapacity sums the free space over the same eligibility
//     (blockCapacity, fileCapacity);
//  6. the words: a refusal carries a message for the StorageClass author
//     and a sentinel for the code (errors.go toStatus picks it), built from
//     the descriptions of sizes, segments and datastores at the end.
//
// Topology as the driver reports it to Kubernetes (a volume's accessible
// segments, a node's, the attach check) is in topology.go.

// placement is where a volume may go: candidate datastores, best first, and
// a sentence that says why, for the logs and for a person watching.
type placement struct {
	Candidates []vcenter.Datastore
	Why        string
}

// --- 1. The zones ---

// placeInTopology is place() with topology: without topology it is place()
// itself. With it, "reachable" means reachable from the node VMs of a
// segment: the requested segments are tried in order (preferred first) and
// the first that has a compatible datastore with room wins. Without
// requirements, any segment will do.
func (d *Driver) placeInTopology(all []vcenter.Datastore, p volumeParams, size int64) (placement, error) {
	wanted := requestedSegments(p.topology)
	if len(d.opts.TopologyCategories) == 0 || len(wanted) == 0 {
		return place(d.eligible(all, nil), p.PolicyName, p.DatastoreURL, size)
	}
	var errs []string
	for _, want := range wanted {
		pl, err := place(d.eligible(all, want), p.PolicyName, p.DatastoreURL, size)
		if err == nil {
			pl.Why = fmt.Sprintf("in %s: %s", describeSegment(want), pl.Why)
			return pl, nil
		}
		if len(wanted) == 1 {
			return placement{}, fmt.Errorf("in %s: %w", describeSegment(want), err) // the refusal's kind stays
		}
		errs = append(errs, fmt.Sprintf("in %s: %s", describeSegment(want), err))
	}
	return placement{}, refuse(vcenter.ErrInsufficientSpace,
		"no requested topology segment has a datastore for this volume: %s", strings.Join(errs, "; "))
}

// requestedSegments are the accessibility requirement's segments, the
// preferred ones first (in order), then the other requisite ones.
func requestedSegments(r *csi.TopologyRequirement) []map[string]string {
	var out []map[string]string
	seen := map[string]bool{}
	for _, t := range append(append([]*csi.Topology(nil), r.GetPreferred()...), r.GetRequisite()...) {
		k := segmentKey(t.GetSegments())
		if len(t.GetSegments()) == 0 || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, t.GetSegments())
	}
	return out
}

// segmentKey tells segments apart: unlike describeSegment, it gives two
// different segments two different keys even when a value holds "," or
// "=" (keys and values quoted).
func segmentKey(seg map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(seg)) {
		b.WriteString(strconv.Quote(k) + "=" + strconv.Quote(seg[k]) + ",")
	}
	return b.String()
}

// --- 2. Eligibility ---

// eligible says, for placement and for capacity alike, which datastores a
// volume may go to, by setting Reachable: without topology, reachable from
// every node VM (as the inventory says); with topology, reachable from the
// node VMs of the segment want, or of any one segment when want is empty.
func (d *Driver) eligible(all []vcenter.Datastore, want map[string]string) []vcenter.Datastore {
	if len(d.opts.TopologyCategories) == 0 {
		return all
	}
	out := make([]vcenter.Datastore, len(all))
	for i, ds := range all {
		out[i] = ds
		if len(want) == 0 {
			out[i].Reachable = ds.Reachable || len(ds.Topology) > 0
			continue
		}
		out[i].Reachable = false
		out[i].Unreachable = []string{"the node VMs of " + describeSegment(want)}
		for _, seg := range ds.Topology {
			if matches(seg, want) {
				out[i].Reachable, out[i].Unreachable = true, nil
			}
		}
	}
	return out
}

// matches says whether a datastore or node segment (categories) is in the
// requested segment (topology keys): every requested key must be one of
// ours and have the same value.
func matches(seg map[string]string, want map[string]string) bool {
	for k, v := range want {
		cat, ok := strings.CutPrefix(k, TopologyKeyPrefix)
		if !ok || seg[cat] != v {
			return false
		}
	}
	return true
}

// --- 3. Ranking ---

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

// usable reports whether a datastore may hold volumes of the policy (if any).
func usable(ds vcenter.Datastore, policy string) bool {
	return ds.Reachable && (policy == "" || ds.Compatible)
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

// --- 4. File volumes: which datastores can hold a file share ---

// fileDatastores splits the datastores into those that can hold a file
// share (File Service on their vSAN cluster) and, for every one that can't
// hold this volume, why not: File Service, the policy, the topology or the
// StorageClass's datastoreurl, in that order.
func (d *Driver) fileDatastores(all []vcenter.Datastore, support map[string]string, p volumeParams) ([]vcenter.Datastore, []string) {
	segs := requestedSegments(p.topology)
	if len(d.opts.TopologyCategories) == 0 || len(segs) == 0 {
		segs = []map[string]string{nil}
	}
	var capable []vcenter.Datastore
	var refusals []string
	for _, ds := range all {
		why, known := support[ds.ID]
		if !known {
			why = "vCenter did not say whether it can hold file shares"
		}
		if why == "" {
			capable = append(capable, ds)
		}
		reachable := false
		for _, seg := range segs {
			if d.eligible([]vcenter.Datastore{ds}, seg)[0].Reachable {
				reachable = true
			}
		}
		switch {
		case why != "":
		case p.PolicyName != "" && !ds.Compatible:
			why = fmt.Sprintf("not compatible with storage policy %q (%s)", p.PolicyName, orDefault(ds.Incompatible, "SPBM rejected it"))
		case !reachable:
			why = "not reachable from the node VMs"
			if len(ds.Unreachable) > 0 {
				why += " (not mounted for " + strings.Join(ds.Unreachable, ", ") + ")"
			}
		case p.DatastoreURL != "" && !sameURL(ds.URL, p.DatastoreURL):
			why = "not the StorageClass's datastoreurl"
		default:
			continue
		}
		refusals = append(refusals, fmt.Sprintf("%s: %s", ds.Name, why))
	}
	sort.Strings(refusals)
	return capable, refusals
}

// noFileDatastore is the refusal of a file volume no datastore can hold,
// with each datastore and why.
func noFileDatastore(p volumeParams, refusals []string) error {
	return status.Errorf(codes.FailedPrecondition,
		"no datastore can hold a ReadWriteMany (file) volume: vSAN File Service puts file shares on a vSAN datastore "+
			"of a cluster where File Service is enabled%s%s. Considered: %s",
		andPolicy(p.PolicyName), andTopology(p), orDefault(strings.Join(refusals, "; "), "no datastores"))
}

func andPolicy(policy string) string {
	if policy == "" {
		return ""
	}
	return fmt.Sprintf(", compatible with storage policy %q", policy)
}

func andTopology(p volumeParams) string {
	s := ", reachable from the node VMs"
	if segs := requestedSegments(p.topology); len(segs) > 0 {
		var names []string
		for _, seg := range segs {
			names = append(names, describeKeys(seg))
		}
		s += " of " + strings.Join(names, " or ")
	}
	if p.DatastoreURL != "" {
		s += ", and the StorageClass's datastoreurl " + p.DatastoreURL
	}
	return s
}

// --- 5. Capacity (GetCapacity) ---

// blockCapacity is GetCapacity for block volumes: the free space of the
// datastores placement would use in the segment asked about.
func (d *Driver) blockCapacity(all []vcenter.Datastore, p volumeParams, segment map[string]string) (total, largest int64) {
	for _, ds := range d.eligible(all, segment) {
		if !usable(ds, p.PolicyName) || (p.DatastoreURL != "" && !sameURL(ds.URL, p.DatastoreURL)) {
			continue
		}
		total += ds.FreeBytes
		largest = max(largest, ds.FreeBytes)
	}
	return total, largest
}

// fileCapacity is GetCapacity for file volumes: the free space of the
// datastores that can hold a file share, as placement would use them.
func (d *Driver) fileCapacity(ctx context.Context, all []vcenter.Datastore, p volumeParams, segment map[string]string) (total, largest int64, err error) {
	support, err := d.vc.FileShareSupport(ctx, false)
	if err != nil {
		return 0, 0, err
	}
	for _, ds := range d.eligible(all, segment) {
		if support[ds.ID] != "" || !usable(ds, p.PolicyName) || (p.DatastoreURL != "" && !sameURL(ds.URL, p.DatastoreURL)) {
			continue
		}
		if _, known := support[ds.ID]; !known {
			continue
		}
		total += ds.FreeBytes
		largest = max(largest, ds.FreeBytes)
	}
	return total, largest, nil
}

// --- 6. The words: refusals and descriptions ---

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

func compatibleWith(policy string) string {
	if policy == "" {
		return ""
	}
	return fmt.Sprintf(" compatible with %q", policy)
}

func describeSize(b int64) string {
	switch {
	case b%gib == 0:
		return fmt.Sprintf("%d GiB", b/gib)
	default:
		return fmt.Sprintf("%d MiB", b/mib)
	}
}

func describeSegment(seg map[string]string) string {
	keys := make([]string, 0, len(seg))
	for k := range seg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+seg[k])
	}
	return strings.Join(parts, ",")
}

func describeKeys(seg map[string]string) string {
	m := map[string]string{}
	for k, v := range seg {
		m[strings.TrimPrefix(k, TopologyKeyPrefix)] = v
	}
	return describeSegment(m)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
