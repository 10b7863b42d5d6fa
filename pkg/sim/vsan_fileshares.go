package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/klog/v2"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
)

// CNS file volumes: vSAN File Service shares. A file volume lives on a vSAN
// datastore whose cluster has File Service enabled (vsan_health.go); its share is
// a directory, <datastore dir>/vsanfs/<share name>, that the embedded
// vCenter's NFS server (nfs.go) exports at /vsanfs/<share name> to the
// clients its net permissions let in. The share is named after the volume,
// as CNS names it; its soft quota is the volume's capacity and is charged
// to the datastore like a disk's size.
//
// What CNS does with a file volume and not with a block one: no first-class
// disk, no attach (nodes mount the share over NFS), no snapshots, no
// clones. Those are refused with faults naming what file volumes support.

// Access point keys, as vSAN reports them in the share's backing details.
const (
	AccessPointNFSv3  = "NFSv3"
	AccessPointNFSv41 = "NFSv4.1"
)

// shareRoot is the directory of a datastore that holds its file shares.
const shareRoot = "vsanfs"

// fileShare is the vSAN file share behind a CNS file volume.
type fileShare struct {
	name  string
	id    string // vSAN's own ID of the share (BackingFileId)
	dir   string
	perms []vsanfstypes.VsanFileShareNetPermission
}

// shareRecord is a file share as kept across restarts (in its volume's record).
type shareRecord struct {
	Name  string                                   `json:"name"`
	ID    string                                   `json:"id"`
	Perms []vsanfstypes.VsanFileShareNetPermission `json:"perms,omitempty"`
}

func (sh *fileShare) record() *shareRecord {
	if sh == nil {
		return nil
	}
	return &shareRecord{Name: sh.name, ID: sh.id, Perms: sh.perms}
}

func shareDir(d *dsModel, name string) string {
	return filepath.Join(d.dir, shareRoot, name)
}

// isFileSpec tells a file volume's create spec from a block one's.
func isFileSpec(spec cnstypes.CnsVolumeCreateSpec) bool {
	if spec.VolumeType == string(cnstypes.CnsVolumeTypeFile) {
		return true
	}
	switch spec.BackingObjectDetails.(type) {
	case *cnstypes.CnsVsanFileShareBackingDetails, *cnstypes.CnsFileBackingDetails:
		return spec.VolumeType == ""
	}
	return false
}

// createFile makes a file volume: its share on the first candidate that is
// a vSAN datastore with File Service, compatible with the policy, with room.
func (m *volumeManager) createFile(vctx *simulator.Context, spec cnstypes.CnsVolumeCreateSpec) (*cnstypes.CnsVolumeCreateResult, types.BaseMethodFault) {
	if spec.BackingObjectDetails == nil {
		return nil, invalidArgument("createSpecs.backingObjectDetails", "a file volume needs CnsVsanFileShareBackingDetails")
	}
	sizeMB := spec.BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb
	if sizeMB <= 0 {
		return nil, invalidArgument("createSpecs.backingObjectDetails.capacityInMb", "capacityInMb must be positive, got %d", sizeMB)
	}
	if spec.Name == "" {
		return nil, invalidArgument("createSpecs.name", "volume name is empty")
	}
	var perms []vsanfstypes.VsanFileShareNetPermission
	switch cs := spec.CreateSpec.(type) {
	case nil:
	case *cnstypes.CnsVSANFileCreateSpec:
		perms = cs.Permission
		if cs.SoftQuotaInMb > 0 && cs.SoftQuotaInMb != sizeMB {
			return nil, invalidArgument("createSpecs.createSpec.softQuotaInMb", "softQuotaInMb %d differs from capacityInMb %d", cs.SoftQuotaInMb, sizeMB)
		}
	default:
		return nil, invalidArgument("createSpecs.createSpec", "a file volume's create spec is a CnsVSANFileCreateSpec, not %T", spec.CreateSpec)
	}
	for i, p := range perms {
		if f := checkPermission(i, p); f != nil {
			return nil, f
		}
	}
	result := &cnstypes.CnsVolumeCreateResult{Name: spec.Name}
	if spec.VolumeSource != nil {
		result.Fault = cnsFault("Failed to create file volume %s: file volumes can't be created from a snapshot or another volume (%T); only block volumes can", spec.Name, spec.VolumeSource)
		return result, nil
	}
	policyID := policyOf(spec)
	if policyID != "" {
		if _, ok := m.policies.lookup(policyID); !ok {
			result.Fault = cnsFault("Failed to create volume %s: storage policy %s not found", spec.Name, policyID)
			return result, nil
		}
	}
	if _, taken := m.shareNamed(spec.Name); taken {
		result.Fault = localized(&types.AlreadyExists{Name: spec.Name}, fmt.Sprintf("Failed to create file volume %s: a vSAN file share named %s already exists", spec.Name, spec.Name))
		return result, nil
	}
	d, reasons := m.placeFile(spec.Datastores, policyID, sizeMB*mib)
	if d == nil {
		result.Fault = cnsFault("Failed to create file volume %s: no datastore can take it: %s", spec.Name, strings.Join(reasons, "; "))
		return result, nil
	}
	sh := &fileShare{name: spec.Name, id: uuid.NewString(), dir: shareDir(d, spec.Name), perms: perms}
	if err := os.MkdirAll(sh.dir, 0o755); err != nil { //nolint:gosec // an NFS share's root
		m.inv.release(d, sizeMB*mib)
		result.Fault = cnsFault("Failed to create file volume %s: %v", spec.Name, err)
		return result, nil
	}
	id := "file:" + uuid.NewString()
	v := &volume{created: time.Now(), ds: d, sizeMB: sizeMB, share: sh}
	m.record(vctx, v, id, spec, policyID, string(cnstypes.CnsVolumeTypeFile), m.shareDetails(sh, sizeMB))
	klog.V(2).InfoS("CNS file volume created", "volumeID", id, "name", spec.Name, "datastore", d.name, "sizeMB", sizeMB, "share", sh.dir)
	result.VolumeId = v.cns.VolumeId
	result.PlacementResults = []cnstypes.CnsPlacementResult{{Datastore: d.ref}}
	return result, nil
}

// checkPermission refuses what vSAN would: no ips, or an access type it
// does not know.
func checkPermission(i int, p vsanfstypes.VsanFileShareNetPermission) types.BaseMethodFault {
	prop := fmt.Sprintf("createSpecs.createSpec.permission[%d]", i)
	if p.Ips == "" {
		return invalidArgument(prop+".ips", "net permission %d names no client addresses", i)
	}
	if !validIPs(p.Ips) {
		return invalidArgument(prop+".ips", "net permission %d: %q is not an address, a network or *", i, p.Ips)
	}
	switch p.Permissions {
	case vsanfstypes.VsanFileShareAccessTypeREAD_WRITE, vsanfstypes.VsanFileShareAccessTypeREAD_ONLY, vsanfstypes.VsanFileShareAccessTypeNO_ACCESS:
		return nil
	}
	return invalidArgument(prop+".permissions", "net permission %d: access %q is not READ_WRITE, READ_ONLY or NO_ACCESS", i, p.Permissions)
}

// shareDetails is the backing of a file volume as CNS reports it: the
// share's name, ID, quota and its access points on the NFS server.
func (m *volumeManager) shareDetails(sh *fileShare, sizeMB int64) *cnstypes.CnsVsanFileShareBackingDetails {
	path := m.nfsAddr() + ":/" + shareRoot + "/" + sh.name
	return &cnstypes.CnsVsanFileShareBackingDetails{
		CnsFileBackingDetails: cnstypes.CnsFileBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB},
			BackingFileId:           sh.id,
		},
		Name: sh.name,
		AccessPoints: []types.KeyValue{
			{Key: AccessPointNFSv3, Value: path},
			{Key: AccessPointNFSv41, Value: path},
		},
	}
}

// nfsAddr is the NFS server's address (vSAN File Service's file server).
func (m *volumeManager) nfsAddr() string {
	if m.nfs == nil || m.nfs.addr == "" {
		return "127.0.0.1"
	}
	return m.nfs.addr
}

// placeFile is place for a file share: only vSAN datastores whose cluster
// has File Service enabled take one; it says why each other was refused.
func (m *volumeManager) placeFile(candidates []types.ManagedObjectReference, policyID string, bytes int64) (*dsModel, []string) {
	if len(candidates) == 0 {
		for _, d := range m.inv.datastores {
			candidates = append(candidates, d.ref)
		}
	}
	var fine []types.ManagedObjectReference
	var reasons []string
	for _, ref := range candidates {
		d, ok := m.inv.dsByRef[ref]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("datastore %s not found", ref.Value))
		case !d.vsan:
			reasons = append(reasons, fmt.Sprintf("datastore '%s' is not a vSAN datastore", d.name))
		case !m.vsan.fileServiceOn(d.cluster):
			reasons = append(reasons, fmt.Sprintf("vSAN File Service is not enabled on cluster '%s' of datastore '%s'", entityName(m.inv.model.Map(), d.cluster), d.name))
		default:
			fine = append(fine, ref)
		}
	}
	if len(fine) == 0 {
		return nil, reasons
	}
	d, more := m.place(fine, policyID, bytes)
	return d, append(reasons, more...)
}

// shareNamed finds a file share by name.
func (m *volumeManager) shareNamed(name string) (fileShare, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.volumes {
		if v.share != nil && v.share.name == name {
			return *v.share, true
		}
	}
	return fileShare{}, false
}

// shareByDir finds a file share and its quota by its directory.
func (m *volumeManager) shareByDir(dir string) (fileShare, int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.volumes {
		if v.share != nil && v.share.dir == dir {
			return *v.share, v.sizeMB, true
		}
	}
	return fileShare{}, 0, false
}

// deleteShare removes a deleted file volume's share: its files and its
// quota's charge on the datastore.
func (m *volumeManager) deleteShare(vctx *simulator.Context, v *volume) {
	if err := os.RemoveAll(v.share.dir); err != nil {
		klog.ErrorS(err, "remove file share", "volumeID", v.cns.VolumeId.Id, "dir", v.share.dir)
	}
	m.inv.release(v.ds, v.sizeMB*mib)
	m.inv.publish(vctx, v.ds)
}

// extendShare grows a file volume's quota (online: clients see the new
// size in their next statfs).
func (m *volumeManager) extendShare(vctx *simulator.Context, v volume, sizeMB int64) *types.LocalizedMethodFault {
	id := v.cns.VolumeId.Id
	delta := (sizeMB - v.sizeMB) * mib
	if !m.inv.reserve(v.ds, delta) {
		_, free := m.inv.space(v.ds)
		return cnsFault("Failed to extend file volume %s: Insufficient disk space on datastore '%s': %d more bytes requested, %d bytes free", id, v.ds.name, delta, free)
	}
	m.mu.Lock()
	if cur, ok := m.volumes[id]; ok {
		cur.sizeMB = sizeMB
		cur.cns.BackingObjectDetails = m.shareDetails(cur.share, sizeMB) // copy-on-write
	}
	m.mu.Unlock()
	m.saveVolume(id)
	m.inv.publish(vctx, v.ds)
	klog.V(2).InfoS("CNS file volume extended", "volumeID", id, "sizeMB", sizeMB)
	return nil
}

// notBlock is the fault for what only block volumes do.
func notBlock(id, what string) *types.LocalizedMethodFault {
	msg := fmt.Sprintf("volume %s is a file volume (a vSAN file share that nodes mount over NFS): %s is for block volumes only", id, what)
	f := &cnstypes.CnsFault{Reason: msg}
	return localized(f, msg)
}

// restoreShare brings back a kept file volume's share directory; a missing
// one (someone removed it) comes back empty.
func restoreShare(d *dsModel, rec *shareRecord) (*fileShare, bool, error) {
	sh := &fileShare{name: rec.Name, id: rec.ID, dir: shareDir(d, rec.Name), perms: rec.Perms}
	_, err := os.Stat(sh.dir)
	if err == nil {
		return sh, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	return sh, true, os.MkdirAll(sh.dir, 0o755) //nolint:gosec // an NFS share's root
}

// usedBytes is what the files of a share take (their sizes, not blocks).
func usedBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// ShareState is a file share as Shares reports it.
type ShareState struct {
	VolumeID, Name, Dir string
	AccessPoints        map[string]string
	Permissions         []vsanfstypes.VsanFileShareNetPermission
}

// Shares lists the vSAN file shares: for tests and checks that nothing
// leaked.
func (s *Sim) Shares() []ShareState {
	m := s.cns
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ShareState
	for id, v := range m.volumes {
		if v.share == nil {
			continue
		}
		st := ShareState{VolumeID: id, Name: v.share.name, Dir: v.share.dir, AccessPoints: map[string]string{},
			Permissions: slices.Clone(v.share.perms)}
		if b, ok := v.cns.BackingObjectDetails.(*cnstypes.CnsVsanFileShareBackingDetails); ok {
			for _, ap := range b.AccessPoints {
				st.AccessPoints[ap.Key] = ap.Value
			}
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ShareState) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// NFSAddress is the address of the embedded vSAN File Service's NFS
// server ("" when it does not serve: not root).
func (s *Sim) NFSAddress() string {
	if s.nfs == nil {
		return ""
	}
	return s.nfs.addr
}

// SetSharePermissions replaces the net permissions of the share named, as
// a vSphere admin does in the vSphere Client (or CNS with
// CnsConfigureVolumeACLs): they apply to the next NFS call, also of the
// clients that have the share mounted.
func (s *Sim) SetSharePermissions(name string, perms []vsanfstypes.VsanFileShareNetPermission) error {
	for i, p := range perms {
		if checkPermission(i, p) != nil {
			return fmt.Errorf("share %s: net permission %d (%+v): ips must be *, addresses or networks; permissions READ_WRITE, READ_ONLY or NO_ACCESS", name, i, p)
		}
	}
	m := s.cns
	m.mu.Lock()
	id := ""
	for vid, v := range m.volumes {
		if v.share != nil && v.share.name == name {
			sh := *v.share
			sh.perms = slices.Clone(perms)
			v.share = &sh
			id = vid
			break
		}
	}
	m.mu.Unlock()
	if id == "" {
		return fmt.Errorf("no vSAN file share named %s", name)
	}
	m.saveVolume(id)
	klog.InfoS("vCenter simulator: file share's net permissions changed", "share", name, "permissions", perms)
	return nil
}
