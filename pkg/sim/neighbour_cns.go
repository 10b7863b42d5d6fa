package sim

import (
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

// The other Kubernetes cluster under the same vCenter, with the same
// vCenter user: its CNS volumes (metadata.containerCluster.clusterId
// Neighbours.OtherClusterID), on zone A's datastores, some attached to its
// node VMs, some with snapshots; and its CNS calls, through the same
// volume manager as ours, so they take the lab's CNS latency, hold the
// same per-volume locks and are what CnsQueryVolume and CnsQuerySnapshots
// answer. What a real vCenter shows for them is what it shows for ours:
// info.name the CNS method, reason TaskReasonUser with the (shared) user,
// entity the CnsVolumeManager; info.activationId is the caller's
// operation ID: half of the calls carry one made by opid.New for the other
// cluster (another cluster running this driver), half none (another
// cluster running the upstream driver, which sends none).

// otherVolumeSizesMB are the sizes the other cluster's volumes take in turn.
var otherVolumeSizesMB = []int64{1024, 2048, 5120}

// otherPlacements are where the other cluster puts its volumes, in turn.
var otherPlacements = []struct{ datastore, policy string }{
	{"vsanDatastore", "vSAN Default Storage Policy"},
	{"silver-ds", "Silver"},
}

// container is the other cluster as CNS records it on its volumes.
func (nb *neighbourhood) container() cnstypes.CnsContainerCluster {
	return cnstypes.CnsContainerCluster{
		ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: nb.opts.OtherClusterID,
		VSphereUser: nb.s.Username(), ClusterFlavor: string(cnstypes.CnsClusterFlavorVanilla),
	}
}

// seedOtherCluster makes the other cluster's volumes at the first start:
// every third attached to one of its node VMs in turn, every fifth with a
// snapshot (every tenth with two).
func (s *Sim) seedOtherCluster() error {
	n := s.opts.Neighbours
	vctx := s.vimContext()
	cc := s.nb.container()
	var nodes []types.ManagedObjectReference
	if ni := s.inv.neighbours; ni != nil {
		for _, v := range ni.vms {
			if v.kind == NeighbourOtherNode {
				nodes = append(nodes, v.ref)
			}
		}
	}
	for i := range n.OtherClusterVolumes {
		place := otherPlacements[i%len(otherPlacements)]
		d, pol := s.inv.dsByName[place.datastore], s.policies.byName[place.policy]
		size := otherVolumeSizesMB[i%len(otherVolumeSizesMB)]
		if d == nil || pol == nil || !s.inv.reserve(d, size*mib) {
			return fmt.Errorf("no room for the other cluster's volume %d on %s", i, place.datastore)
		}
		id, err := s.seedVolume(vctx, d, "pvc-"+uuid.NewString(), pol.id, cc, size)
		if err != nil {
			return err
		}
		if i%3 == 0 && len(nodes) > 0 {
			if _, f := s.cns.attach(vctx, id, nodes[(i/3)%len(nodes)]); f != nil {
				klog.InfoS("The other cluster's volume stays detached", "volumeID", id, "err", f.LocalizedMessage)
			}
		}
		for k := range snapshotsAtSeed(i) {
			s.cns.createSnapshot(cnstypes.CnsSnapshotCreateSpec{VolumeId: cnstypes.CnsVolumeId{Id: id}, Description: fmt.Sprintf("snapshot-%s-%d", uuid.NewString()[:8], k)})
		}
	}
	for _, p := range otherPlacements {
		if d := s.inv.dsByName[p.datastore]; d != nil {
			s.inv.publish(vctx, d)
		}
	}
	return nil
}

// snapshotsAtSeed is how many snapshots the other cluster's i-th volume
// has at the first start.
func snapshotsAtSeed(i int) int {
	switch {
	case i%10 == 1:
		return 2
	case i%5 == 1:
		return 1
	}
	return 0
}

// otherVolume is one of the other cluster's volumes, as a task picks it.
type otherVolume struct {
	id       string
	attached bool
	snaps    []string // its snapshots' IDs, oldest first
}

// otherVolumes lists the other cluster's block volumes in creation order.
func (nb *neighbourhood) otherVolumes() []string {
	var ids []string
	for _, v := range nb.otherVolumeStates() {
		ids = append(ids, v.id)
	}
	return ids
}

func (nb *neighbourhood) otherVolumeStates() []otherVolume {
	m := nb.s.cns
	m.mu.Lock()
	defer m.mu.Unlock()
	type seqVol struct {
		seq int64
		v   otherVolume
	}
	var list []seqVol
	for id, v := range m.volumes {
		if v.share != nil || v.cns.Metadata.ContainerCluster.ClusterId != nb.opts.OtherClusterID {
			continue
		}
		ov := otherVolume{id: id, attached: v.vm != nil}
		for _, r := range m.snaps[id] {
			ov.snaps = append(ov.snaps, r.cns.SnapshotId.Id)
		}
		list = append(list, seqVol{v.seq, ov})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	out := make([]otherVolume, 0, len(list))
	for _, l := range list {
		out = append(out, l.v)
	}
	return out
}

// cnsTask is one CNS call of the other cluster.
func (nb *neighbourhood) cnsTask(_ *simulator.Context, kind NeighbourTaskKind, d time.Duration) (taskSpec, error) {
	var (
		method, op, key string
		run             func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault)
		err             error
	)
	switch kind {
	case NeighbourCNSCreate:
		method, op, key, run = nb.cnsCreate()
	case NeighbourCNSDelete:
		method, op, key, run, err = nb.cnsDelete()
	case NeighbourCNSSnapshot:
		method, op, key, run, err = nb.cnsSnapshot()
	default:
		method, op, key, run, err = nb.cnsDeleteSnapshot()
	}
	if err != nil {
		return taskSpec{}, err
	}
	activation := ""
	if nb.chance(0.5) {
		activation = opid.New(nb.opts.OtherClusterID, op, key)
	}
	if d <= 0 {
		d = nb.s.lab.latencyOf(method)
	}
	return taskSpec{
		method: method, unnamed: true, describe: cnsTaskID(method), entity: nb.s.cns.ManagedObjectReference,
		reason:     &types.TaskReasonUser{UserName: callerName(nb.s.Username())},
		activation: activation, duration: d, run: run,
	}, nil
}

type cnsRun = func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault)

// cnsCreate creates a volume of the other cluster on one of its
// datastores.
func (nb *neighbourhood) cnsCreate() (method, op, key string, run cnsRun) {
	m := nb.s.cns
	place := otherPlacements[nb.pick(len(otherPlacements))]
	size := otherVolumeSizesMB[nb.pick(len(otherVolumeSizesMB))]
	cc := nb.container()
	spec := cnstypes.CnsVolumeCreateSpec{
		Name: "pvc-" + uuid.NewString(), VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		Metadata:             cnstypes.CnsVolumeMetadata{ContainerCluster: cc, ContainerClusterArray: []cnstypes.CnsContainerCluster{cc}},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: size}},
	}
	if d := nb.s.inv.dsByName[place.datastore]; d != nil {
		spec.Datastores = []types.ManagedObjectReference{d.ref}
	}
	if pol := nb.s.policies.byName[place.policy]; pol != nil {
		spec.Profile = []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: pol.id}}
	}
	return "CnsCreateVolume", opid.Create, spec.Name, func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		res, fault := m.create(vctx, spec)
		if fault != nil {
			return nil, fault
		}
		return batch(res), nil
	}
}

// cnsDelete deletes one of the other cluster's volumes that is detached
// and has no snapshots.
func (nb *neighbourhood) cnsDelete() (method, op, key string, run cnsRun, err error) {
	var free []string
	for _, v := range nb.otherVolumeStates() {
		if !v.attached && len(v.snaps) == 0 {
			free = append(free, v.id)
		}
	}
	if len(free) == 0 {
		return "", "", "", nil, errNoCandidate
	}
	id := free[nb.pick(len(free))]
	m := nb.s.cns
	return "CnsDeleteVolume", opid.Delete, id, func(vctx *simulator.Context) (types.AnyType, types.BaseMethodFault) {
		res := opResult(id, m.delete(vctx, id, true))
		return batch(&res), nil
	}, nil
}

// cnsSnapshot snapshots one of the other cluster's volumes that has fewer
// than three.
func (nb *neighbourhood) cnsSnapshot() (method, op, key string, run cnsRun, err error) {
	var few []string
	for _, v := range nb.otherVolumeStates() {
		if len(v.snaps) < 3 {
			few = append(few, v.id)
		}
	}
	if len(few) == 0 {
		return "", "", "", nil, errNoCandidate
	}
	spec := cnstypes.CnsSnapshotCreateSpec{VolumeId: cnstypes.CnsVolumeId{Id: few[nb.pick(len(few))]}, Description: "snapshot-" + uuid.NewString()}
	m := nb.s.cns
	return "CnsCreateSnapshots", opid.Snapshot, spec.VolumeId.Id + "/" + spec.Description, func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		return batch(m.createSnapshot(spec)), nil
	}, nil
}

// cnsDeleteSnapshot deletes the oldest snapshot of one of the other
// cluster's volumes.
func (nb *neighbourhood) cnsDeleteSnapshot() (method, op, key string, run cnsRun, err error) {
	var with []otherVolume
	for _, v := range nb.otherVolumeStates() {
		if len(v.snaps) > 0 {
			with = append(with, v)
		}
	}
	if len(with) == 0 {
		return "", "", "", nil, errNoCandidate
	}
	v := with[nb.pick(len(with))]
	spec := cnstypes.CnsSnapshotDeleteSpec{VolumeId: cnstypes.CnsVolumeId{Id: v.id}, SnapshotId: cnstypes.CnsSnapshotId{Id: v.snaps[0]}}
	m := nb.s.cns
	return "CnsDeleteSnapshots", opid.Unsnap, v.id, func(*simulator.Context) (types.AnyType, types.BaseMethodFault) {
		return batch(m.deleteSnapshot(spec)), nil
	}, nil
}
