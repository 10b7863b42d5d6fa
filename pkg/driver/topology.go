package driver

import (
	"context"
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

// Topology: zones and regions from vSphere tags (pkg/vcenter/topology.go).
// A segment is {topology.csi.vmware.com/<category>: <tag>}, the keys
// upstream uses, so a cluster that ran the upstream driver keeps its PV node
// affinities. The controller knows each datastore's segments and each node
// VM's; the node plugin learns its own segment once at start (Options.
// NodeTopology, see pkg/app).

// TopologyKeyPrefix prefixes a tag category to make a topology key.
const TopologyKeyPrefix = "topology.csi.vmware.com/"

// topologyOn says whether this process serves topology: categories
// configured (controller) or a segment known (node).
func (d *Driver) topologyOn() bool {
	return len(d.opts.TopologyCategories) > 0 || len(d.opts.NodeTopology) > 0
}

// toCSI turns a segment of category → tag into topology keys.
func toCSI(seg map[string]string) *csi.Topology {
	out := &csi.Topology{Segments: map[string]string{}}
	for k, v := range seg {
		out.Segments[TopologyKeyPrefix+k] = v
	}
	return out
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

// volumeTopology is where a volume is accessible: the segments in which its
// datastore is reachable. Answered from the caches (no vCenter call).
func (d *Driver) volumeTopology(ctx context.Context, v vcenter.Volume) ([]*csi.Topology, string, error) {
	if len(d.opts.TopologyCategories) == 0 || v.DatastoreURL == "" {
		return nil, "", nil
	}
	all, err := d.vc.Datastores(ctx, "")
	if err != nil {
		return nil, "", err
	}
	for _, ds := range all {
		if !sameURL(ds.URL, v.DatastoreURL) {
			continue
		}
		var out []*csi.Topology
		for _, seg := range ds.Topology {
			out = append(out, toCSI(seg))
		}
		return out, ds.Name, nil
	}
	return nil, "", nil
}

// withTopology adds the volume's accessible topology to a CreateVolume
// answer.
func (d *Driver) withTopology(ctx context.Context, v vcenter.Volume, out *csi.Volume) error {
	segs, _, err := d.volumeTopology(ctx, v)
	out.AccessibleTopology = segs
	return err
}

// checkNodeTopology refuses to attach a volume to a node VM outside the
// volume's segments (its datastore is not reachable there), with
// FailedPrecondition: the pod must run where the volume is.
func (d *Driver) checkNodeTopology(ctx context.Context, volumeID string, node vcenter.NodeVM) error {
	if len(d.opts.TopologyCategories) == 0 {
		return nil
	}
	v, err := d.vc.Volume(ctx, volumeID)
	if err != nil {
		return nil // the attach says what is wrong (or registers a static disk)
	}
	segs, dsName, err := d.volumeTopology(ctx, v)
	if err != nil || len(segs) == 0 {
		return err
	}
	var where []string
	for _, s := range segs {
		want := s.GetSegments()
		if matches(node.Topology, want) {
			return nil
		}
		where = append(where, describeKeys(want))
	}
	return status.Errorf(codes.FailedPrecondition,
		"volume %s is on datastore %s, accessible in %s; node VM %s is in %s, where that datastore is not reachable: "+
			"run the pod in the volume's topology (the PV's node affinity says where)",
		volumeID, dsName, strings.Join(where, " or "), node.Name, orDefault(describeSegment(node.Topology), "no topology segment"))
}

func describeKeys(seg map[string]string) string {
	m := map[string]string{}
	for k, v := range seg {
		m[strings.TrimPrefix(k, TopologyKeyPrefix)] = v
	}
	return describeSegment(m)
}

// nodeAccessibleTopology is what NodeGetInfo reports.
func (d *Driver) nodeAccessibleTopology() *csi.Topology {
	if len(d.opts.NodeTopology) == 0 {
		return nil
	}
	return toCSI(maps.Clone(d.opts.NodeTopology))
}
