package sim

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vsan"
	vsantypes "github.com/vmware/govmomi/vsan/types"
	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
)

// fileSpec is a file volume's create spec as the driver sends it.
func fileSpec(name string, sizeMB int64, policyID string, perms []vsanfstypes.VsanFileShareNetPermission, ds ...types.ManagedObjectReference) cnstypes.CnsVolumeCreateSpec {
	spec := createSpec(name, sizeMB, policyID, ds...)
	spec.VolumeType = string(cnstypes.CnsVolumeTypeFile)
	spec.BackingObjectDetails = &cnstypes.CnsVsanFileShareBackingDetails{
		CnsFileBackingDetails: cnstypes.CnsFileBackingDetails{CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB}},
	}
	spec.CreateSpec = &cnstypes.CnsVSANFileCreateSpec{SoftQuotaInMb: sizeMB, Permission: perms}
	return spec
}

var everyoneRW = []vsanfstypes.VsanFileShareNetPermission{{Ips: "*", Permissions: vsanfstypes.VsanFileShareAccessTypeREAD_WRITE, AllowRoot: true}}

func TestFileVolumeLifecycle(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	gold := policyID(t, c, "Gold")
	before := dsInfo(t, s, "vsanDatastore").FreeBytes

	// No datastore named: only the vSAN one with File Service can take it.
	id := mustCreate(t, c, fileSpec("pvc-rwx-1", 512, gold, everyoneRW))
	if !strings.HasPrefix(id, "file:") {
		t.Errorf("volume ID %q: a file volume's ID starts with file:", id)
	}
	v := queryOne(t, c, id)
	if v.VolumeType != string(cnstypes.CnsVolumeTypeFile) || v.DatastoreUrl != dsInfo(t, s, "vsanDatastore").URL {
		t.Errorf("volume type %q on %q, want FILE on vsanDatastore", v.VolumeType, v.DatastoreUrl)
	}
	b, ok := v.BackingObjectDetails.(*cnstypes.CnsVsanFileShareBackingDetails)
	if !ok {
		t.Fatalf("backing %T, want CnsVsanFileShareBackingDetails", v.BackingObjectDetails)
	}
	aps := map[string]string{}
	for _, kv := range b.AccessPoints {
		aps[kv.Key] = kv.Value
	}
	addr := s.NFSAddress()
	if addr == "" {
		addr = "127.0.0.1"
	}
	want := addr + ":/vsanfs/pvc-rwx-1"
	if aps[AccessPointNFSv41] != want || aps[AccessPointNFSv3] != want {
		t.Errorf("access points %v, want NFSv3 and NFSv4.1 at %s", aps, want)
	}
	if b.CapacityInMb != 512 || b.Name != "pvc-rwx-1" || b.BackingFileId == "" {
		t.Errorf("backing %+v: want 512 MB, the share named after the volume, a share ID", b)
	}
	shares := s.Shares()
	if len(shares) != 1 || shares[0].VolumeID != id {
		t.Fatalf("shares %+v", shares)
	}
	if st, err := os.Stat(shares[0].Dir); err != nil || !st.IsDir() {
		t.Fatalf("share directory: %v", err)
	}
	if got := dsInfo(t, s, "vsanDatastore").FreeBytes; got != before-512*mib {
		t.Errorf("free space %d after a 512 MB share, want %d", got, before-512*mib)
	}

	// What only block volumes do.
	node := s.NodeVMs()[0]
	task, err := c.cns.AttachVolume(ctx, []cnstypes.CnsVolumeAttachDetachSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, Vm: vmRef(node)}})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "file volume") {
		t.Errorf("attach of a file volume: %v, want a fault saying it is a file volume", f)
	}
	task, err = c.cns.CreateSnapshots(ctx, []cnstypes.CnsSnapshotCreateSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, Description: "snap"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := cns.GetTaskResult(ctx, info); err != nil || faultOf(res) == nil || !strings.Contains(faultOf(res).LocalizedMessage, "block volumes only") {
		t.Errorf("snapshot of a file volume: %v %v, want a fault", res, err)
	}

	// The quota grows online; the datastore is charged for it.
	task, err = c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 2048}})
	if f := faultOf(result(t, task, err)); f != nil {
		t.Fatalf("extend: %s", f.LocalizedMessage)
	}
	if got := queryOne(t, c, id).BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb; got != 2048 {
		t.Errorf("capacity after extend %d MB, want 2048", got)
	}
	if got := dsInfo(t, s, "vsanDatastore").FreeBytes; got != before-2048*mib {
		t.Errorf("free space %d after extend, want %d", got, before-2048*mib)
	}

	// A second volume may not take the share's name.
	task, err = c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{fileSpec("pvc-rwx-1", 100, "", everyoneRW)})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "already exists") {
		t.Errorf("a second share of one name: %v", f)
	}

	if err := os.WriteFile(filepath.Join(shares[0].Dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	task, err = c.cns.DeleteVolume(ctx, []cnstypes.CnsVolumeId{{Id: id}}, true)
	if f := faultOf(result(t, task, err)); f != nil {
		t.Fatalf("delete: %s", f.LocalizedMessage)
	}
	if _, err := os.Stat(shares[0].Dir); !os.IsNotExist(err) {
		t.Errorf("share directory after delete: %v, want it gone", err)
	}
	if len(s.Shares()) != 0 || dsInfo(t, s, "vsanDatastore").FreeBytes != before {
		t.Errorf("after delete: shares %v, free %d (want %d)", s.Shares(), dsInfo(t, s, "vsanDatastore").FreeBytes, before)
	}
}

func TestFileVolumeRefusals(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	refused := func(spec cnstypes.CnsVolumeCreateSpec, want ...string) {
		t.Helper()
		task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{spec})
		f := faultOf(result(t, task, err))
		if f == nil {
			t.Fatalf("%s: created, want a fault saying %q", spec.Name, want)
		}
		if !containsAll(f.LocalizedMessage, want...) {
			t.Errorf("%s: fault %q, want it to say %q", spec.Name, f.LocalizedMessage, want)
		}
	}
	refused(fileSpec("not-vsan", 100, "", everyoneRW, dsRef(t, s, "nfs-gold")), "'nfs-gold' is not a vSAN datastore")
	refused(fileSpec("wrong-policy", 100, policyID(t, c, "Host-local PMem Default Storage Policy"), everyoneRW), "vsanDatastore", "not a vSAN datastore")
	if err := s.SetFileService(ZoneA, false); err != nil {
		t.Fatal(err)
	}
	refused(fileSpec("fs-off", 100, "", everyoneRW, dsRef(t, s, "vsanDatastore")), "vSAN File Service is not enabled on cluster", "vsanDatastore")
	if err := s.SetFileService("zone-c", true); err == nil {
		t.Error("File Service switched on in a zone that does not exist")
	}
	if err := s.SetFileService(ZoneA, true); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c, fileSpec("fs-on", 100, "", everyoneRW, dsRef(t, s, "vsanDatastore")))

	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{fileSpec("bad-perm", 100, "", []vsanfstypes.VsanFileShareNetPermission{{Ips: "10.0.0.0/33", Permissions: vsanfstypes.VsanFileShareAccessTypeREAD_ONLY}})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cns.GetTaskInfo(ctx, task); err == nil || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("a bad net permission: %v, want the task to fail naming it", err)
	}
}

func TestVsanClusterConfig(t *testing.T) {
	s := startSim(t, Options{ZoneBNodeVMs: 1})
	c := connect(t, s)
	ctx := context.Background()
	vc, err := vsan.NewClient(ctx, c.vim)
	if err != nil {
		t.Fatal(err)
	}
	fileService := func(ref types.ManagedObjectReference) (vsanOn bool, fs *vsantypes.VsanFileServiceConfig) {
		t.Helper()
		cfg, err := vc.VsanClusterGetConfig(ctx, ref)
		if err != nil {
			t.Fatalf("VsanClusterGetConfig %s: %v", ref, err)
		}
		return cfg.Enabled != nil && *cfg.Enabled, cfg.FileServiceConfig
	}
	a, b := s.inv.zoneA, s.inv.zoneB
	for zone, ref := range map[string]types.ManagedObjectReference{ZoneA: a, ZoneB: b} {
		if on, fs := fileService(ref); !on || fs == nil || !fs.Enabled {
			t.Errorf("%s: vSAN %v, file service %+v; want both on (each cluster has its vSAN datastore)", zone, on, fs)
		}
	}
	// Switched off through the vSAN API, as an admin does.
	task, err := vc.VsanClusterReconfig(ctx, a, vsantypes.VimVsanReconfigSpec{FileServiceConfig: &vsantypes.VsanFileServiceConfig{Enabled: false}})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, fs := fileService(a); fs == nil || fs.Enabled {
		t.Errorf("zone A after switching File Service off: %+v", fs)
	}
	if _, fs := fileService(b); fs == nil || !fs.Enabled {
		t.Errorf("zone B after switching zone A's File Service off: %+v", fs)
	}
	if _, err := vc.VsanClusterGetConfig(ctx, types.ManagedObjectReference{Type: "ClusterComputeResource", Value: "domain-c999"}); err == nil {
		t.Error("an unknown cluster's config: no error")
	}

	// vsanDatastore says it is vSAN by its info, as vSAN datastores do.
	var ds mo.Datastore
	if err := c.client().RetrieveOne(ctx, dsRef(t, s, "vsanDatastore"), []string{"info"}, &ds); err != nil {
		t.Fatal(err)
	}
	if _, ok := ds.Info.(*types.VsanDatastoreInfo); !ok {
		t.Errorf("vsanDatastore's info is %T, want VsanDatastoreInfo", ds.Info)
	}
}

func TestFileVolumesKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := startSim(t, Options{Dir: dir})
	c := connect(t, s)
	id := mustCreate(t, c, fileSpec("pvc-kept", 300, "", everyoneRW))
	addr := s.NFSAddress()
	shareFile := filepath.Join(s.Shares()[0].Dir, "kept")
	if err := os.WriteFile(shareFile, []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFileService(ZoneA, false); err != nil {
		t.Fatal(err)
	}
	free := dsInfo(t, s, "vsanDatastore").FreeBytes
	s.Stop(StopOptions{})

	s2 := startSim(t, Options{Dir: dir})
	c2 := connect(t, s2)
	v := queryOne(t, c2, id)
	if v.Name != "pvc-kept" || v.VolumeType != string(cnstypes.CnsVolumeTypeFile) {
		t.Errorf("kept volume: %+v", v)
	}
	if got, err := os.ReadFile(shareFile); err != nil || string(got) != "still here" {
		t.Errorf("share data after restart: %q %v", got, err)
	}
	if s2.NFSAddress() != addr {
		t.Errorf("NFS server at %q after restart, was %q: access points would change", s2.NFSAddress(), addr)
	}
	if s2.vsan.fileServiceOn(s2.inv.zoneA) {
		t.Error("File Service switched off came back on after a restart")
	}
	if got := dsInfo(t, s2, "vsanDatastore").FreeBytes; got != free {
		t.Errorf("free space %d after restart, was %d", got, free)
	}
}

// TestNFSOnAGivenAddress: with Options.NFSAddress the shares are served,
// and their access points name, that address (a node address other
// network namespaces reach), also after a restart; taken, it is not
// swapped for another.
func TestNFSOnAGivenAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("serving NFS on port 2049 needs root")
	}
	const ip = "127.99.0.7"
	dir := t.TempDir()
	s := startSim(t, Options{Dir: dir, NFSAddress: ip})
	if s.NFSAddress() != ip {
		t.Fatalf("NFS server at %q, want %q", s.NFSAddress(), ip)
	}
	c := connect(t, s)
	id := mustCreate(t, c, fileSpec("pvc-fixed", 100, "", everyoneRW))
	b := queryOne(t, c, id).BackingObjectDetails.(*cnstypes.CnsVsanFileShareBackingDetails)
	for _, kv := range b.AccessPoints {
		if kv.Value != ip+":/vsanfs/pvc-fixed" {
			t.Errorf("access point %s=%s, want the given address", kv.Key, kv.Value)
		}
	}
	conn, err := net.Dial("tcp", ip+":2049")
	if err != nil {
		t.Fatalf("nothing serves %s:2049: %v", ip, err)
	}
	conn.Close()

	// Taken by another: no NFS rather than another address.
	other := startSim(t, Options{NFSAddress: ip})
	if got := other.NFSAddress(); got != "" {
		t.Errorf("a second vCenter given the taken %s serves NFS at %q, want none", ip, got)
	}

	s.Stop(StopOptions{})
	s2 := startSim(t, Options{Dir: dir, NFSAddress: ip})
	if s2.NFSAddress() != ip {
		t.Errorf("NFS server at %q after a restart, want %q", s2.NFSAddress(), ip)
	}
}
