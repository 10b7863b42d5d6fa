package driver

import (
	"context"
	"maps"
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

// volumeTopology is where a volume is accessible: the segments in which its
// datastore is reachable. Answered from the caches (no vCenter call). A file
// volume is accessible everywhere (no segment): its share is on a datastore
// of one zone, but every node mounts it over NFS, in any zone (as upstream
// answers; Kubernetes' storage suite runs two pods of one share in two zones).
func (d *Driver) volumeTopology(ctx context.Context, v vcenter.Volume) ([]*csi.Topology, string, error) {
	if len(d.opts.TopologyCategories) == 0 || v.DatastoreURL == "" || v.File {
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

// nodeAccessibleTopology is what NodeGetInfo reports.
func (d *Driver) nodeAccessibleTopology() *csi.Topology {
	if len(d.opts.NodeTopology) == 0 {
		return nil
	}
	return toCSI(maps.Clone(d.opts.NodeTopology))
}
