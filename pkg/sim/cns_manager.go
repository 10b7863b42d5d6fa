package sim

import (
	"fmt"
	"sync"
	"time"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// volumeManager replaces the stock CnsVolumeManager. Its state is guarded
// by mu; operations on one volume are serialized by volLocks, device
// changes on one VM by vmLocks (always volume first, then VM). Tasks run
// concurrently (see taskStripes).
//
// Records are copy-on-write: a CnsVolume handed to a SOAP response is never
// mutated afterwards (slices and pointers inside are replaced, not edited).
type volumeManager struct {
	types.ManagedObjectReference

	inv      *inventory
	policies *policyMap
	hv       hypervisor
	lab      *lab
	store    *store      // where records are kept across restarts
	vsan     *vsanSystem // which clusters have File Service
	nfs      *nfsServer  // vSAN File Service's NFS server

	volLocks keyedMutex // one operation per volume at a time
	vmLocks  keyedMutex // one device change per VM at a time (unit numbers)

	mu      sync.Mutex
	seq     int64
	volumes map[string]*volume        // by volume ID
	snaps   map[string][]*snapshotRec // by volume ID, oldest first (cns_snapshot.go)
}

// volume is one CNS volume.
type volume struct {
	seq      int64 // creation order, for stable paging
	created  time.Time
	cns      cnstypes.CnsVolume
	ds       *dsModel
	sizeMB   int64
	diskPath string // "[ds] fcd/<id>.vmdk"
	flatFile string // <ds dir>/fcd/<id>-flat.vmdk
	descFile string // <ds dir>/fcd/<id>.vmdk
	diskUUID string // backing UUID, "6000C29x-xxxx-…", fixed at creation
	vm       *types.ManagedObjectReference
	fcd      types.VStorageObject // the first-class disk, as kept across restarts
	share    *fileShare           // a file volume's share (vsan_fileshares.go); nil for a block volume
}

func newVolumeManager(inv *inventory, policies *policyMap, hv hypervisor, b *lab, st *store) *volumeManager {
	return &volumeManager{
		ManagedObjectReference: cns.CnsVolumeManagerInstance,
		inv:                    inv,
		policies:               policies,
		hv:                     hv,
		lab:                    b,
		store:                  st,
		volumes:                map[string]*volume{},
	}
}

// register serves the manager at the CNS endpoint, replacing a stock one
// if some other package registered it.
func (m *volumeManager) register(svc *simulator.Service) {
	r := simulator.NewRegistry()
	r.Namespace = cns.Namespace
	r.Path = cns.Path
	r.Put(m)
	svc.RegisterSDK(r)
}

func (m *volumeManager) get(id string) (*volume, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.volumes[id]
	return v, ok
}

// snapshot copies the record under the lock.
func (m *volumeManager) snapshot(id string) (volume, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.volumes[id]
	if !ok {
		return volume{}, false
	}
	return *v, true
}

// VolumeState is a CNS volume as Volumes reports it.
type VolumeState struct {
	ID, Name string
	VM       string // the node VM its disk is attached to, "" when none
}

// Volumes lists the CNS volumes: for tests and checks that nothing leaked,
// was made twice or stayed attached.
func (s *Sim) Volumes() []VolumeState {
	m := s.cns
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]VolumeState, 0, len(m.volumes))
	for id, v := range m.volumes {
		st := VolumeState{ID: id, Name: v.cns.Name}
		if v.vm != nil {
			st.VM = v.vm.Value
			if n, ok := m.inv.nodeOf(*v.vm); ok {
				st.VM = n.name
			}
		}
		out = append(out, st)
	}
	return out
}

// Snapshots lists the CNS snapshots' descriptions by volume ID.
func (s *Sim) Snapshots() map[string][]string {
	m := s.cns
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for id, list := range m.snaps {
		for _, r := range list {
			out[id] = append(out[id], r.cns.Description)
		}
	}
	return out
}

// SnapshotCount is the number of CNS snapshots of every volume.
func (s *Sim) SnapshotCount() int {
	m := s.cns
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, list := range m.snaps {
		n += len(list)
	}
	return n
}

// count is the number of volumes.
func (m *volumeManager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.volumes)
}

func (m *volumeManager) volumeFile(id string) (string, bool) {
	v, ok := m.snapshot(id)
	return v.flatFile, ok
}

// Faults.

func localized(f types.BaseMethodFault, msg string) *types.LocalizedMethodFault {
	f.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "com.vmware.cns.fault", Message: msg}}
	return &types.LocalizedMethodFault{Fault: f, LocalizedMessage: msg}
}

func cnsFault(format string, args ...any) *types.LocalizedMethodFault {
	msg := fmt.Sprintf(format, args...)
	return localized(&cnstypes.CnsFault{Reason: msg}, msg)
}

func volumeNotFound(id string) *types.LocalizedMethodFault {
	msg := fmt.Sprintf("volume %s not found", id)
	return localized(&cnstypes.CnsVolumeNotFoundFault{CnsFault: cnstypes.CnsFault{Reason: msg}, VolumeId: cnstypes.CnsVolumeId{Id: id}}, msg)
}

func vmNotFound(ref types.ManagedObjectReference) *types.LocalizedMethodFault {
	msg := fmt.Sprintf("virtual machine %s not found", ref.Value)
	return localized(&types.ManagedObjectNotFound{Obj: ref}, msg)
}

func inUse(id string, vm types.ManagedObjectReference, vmName string) *types.LocalizedMethodFault {
	msg := fmt.Sprintf("volume %s is attached to VM %s (%s)", id, vmName, vm.Value)
	return localized(&types.ResourceInUse{Type: "VirtualMachine", Name: vmName}, msg)
}

func invalidArgument(property, format string, args ...any) *types.InvalidArgument {
	msg := fmt.Sprintf(format, args...)
	f := &types.InvalidArgument{InvalidProperty: property}
	f.FaultMessage = []types.LocalizableMessage{{Key: "com.vmware.cns.invalidArgument", Message: msg}}
	return f
}

func opResult(id string, fault *types.LocalizedMethodFault) cnstypes.CnsVolumeOperationResult {
	return cnstypes.CnsVolumeOperationResult{VolumeId: cnstypes.CnsVolumeId{Id: id}, Fault: fault}
}

func batch(results ...cnstypes.BaseCnsVolumeOperationResult) *cnstypes.CnsVolumeOperationBatchResult {
	return &cnstypes.CnsVolumeOperationBatchResult{VolumeResults: results}
}

// SetVolumeHealth sets the health CNS reports for a volume ("green",
// "yellow", "red", "unknown"), as vSphere does when its storage degrades;
// false when there is no such volume. For tests and demos of volume
// conditions.
func (s *Sim) SetVolumeHealth(volumeID, health string) bool {
	m := s.cns
	m.mu.Lock()
	v, ok := m.volumes[volumeID]
	if ok {
		v.cns.HealthStatus = health
	}
	m.mu.Unlock()
	if ok {
		m.saveVolume(volumeID)
	}
	return ok
}
