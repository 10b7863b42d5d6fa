package sim

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func queryOne(t *testing.T, c *clients, id string) cnstypes.CnsVolume {
	t.Helper()
	res, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: id}}})
	if err != nil {
		t.Fatalf("query %s: %v", id, err)
	}
	if len(res.Volumes) != 1 {
		t.Fatalf("query %s: %d volumes", id, len(res.Volumes))
	}
	return res.Volumes[0]
}

func TestCreatePlacement(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	gold := policyID(t, c, "Gold")

	// Gold: silver-ds is skipped, nfs-gold takes it.
	id := mustCreate(t, c, createSpec("pvc-gold", 1024, gold, dsRef(t, s, "silver-ds"), dsRef(t, s, "nfs-gold")))
	v := queryOne(t, c, id)
	if v.DatastoreUrl != dsInfo(t, s, "nfs-gold").URL {
		t.Errorf("Gold volume on %s, want nfs-gold %s", v.DatastoreUrl, dsInfo(t, s, "nfs-gold").URL)
	}
	if v.StoragePolicyId != gold || v.Metadata.ContainerCluster.ClusterId != "test-cluster" || v.Name != "pvc-gold" {
		t.Errorf("record %+v", v)
	}
	if got := v.BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb; got != 1024 {
		t.Errorf("capacity %d MB, want 1024", got)
	}
	file, ok := s.VolumeFile(id)
	if !ok || !strings.HasPrefix(file, dsInfo(t, s, "nfs-gold").Dir+"/fcd/") || !strings.HasSuffix(file, id+"-flat.vmdk") {
		t.Errorf("VolumeFile = %s, %v", file, ok)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != 1024<<20 {
		t.Errorf("data file: %v, size %d; want %d", err, fi.Size(), 1024<<20)
	}

	// Gold on silver-ds only: incompatible, with the reason.
	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec("pvc-x", 1024, gold, dsRef(t, s, "silver-ds"))})
	f := faultOf(result(t, task, err))
	if f == nil || !strings.Contains(f.LocalizedMessage, "does not satisfy policy Gold") {
		t.Fatalf("Gold on silver-ds: fault %+v", f)
	}
	if _, ok := f.Fault.(*cnstypes.CnsFault); !ok {
		t.Errorf("fault type %T, want CnsFault", f.Fault)
	}

	// Names are not deduplicated (real CNS does not either).
	id2 := mustCreate(t, c, createSpec("pvc-gold", 1024, gold, dsRef(t, s, "vsanDatastore")))
	if id2 == id {
		t.Errorf("same ID for two creates")
	}
	res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{Names: []string{"pvc-gold"}})
	if err != nil || len(res.Volumes) != 2 {
		t.Errorf("query by name: %v, %d volumes, want 2", err, len(res.Volumes))
	}

	// File volumes are refused.
	spec := createSpec("file", 1024, "")
	spec.VolumeType = string(cnstypes.CnsVolumeTypeFile)
	spec.BackingObjectDetails = &cnstypes.CnsVsanFileShareBackingDetails{}
	task, err = c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{spec})
	if err == nil {
		if _, err = cns.GetTaskInfo(ctx, task); err == nil {
			t.Errorf("file volume create succeeded")
		}
	}
}

func freeSpace(t *testing.T, c *clients, ref types.ManagedObjectReference) int64 {
	t.Helper()
	var ds mo.Datastore
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), ref, []string{"summary"}, &ds); err != nil {
		t.Fatal(err)
	}
	return ds.Summary.FreeSpace
}

func TestCapacityAccounting(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	nfs := dsRef(t, s, "nfs-gold")
	total := freeSpace(t, c, nfs)

	// A property-collector watch sees freeSpace go down.
	seen := make(chan int64, 16)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = property.Wait(wctx, property.DefaultCollector(c.vim), nfs, []string{"summary.freeSpace"}, func(pc []types.PropertyChange) bool {
			for _, ch := range pc {
				if v, ok := ch.Val.(int64); ok {
					seen <- v
				}
			}
			return false
		})
	}()
	if v := <-seen; v != total {
		t.Fatalf("watch starts at %d, want %d", v, total)
	}

	id := mustCreate(t, c, createSpec("big", 100*1024, "", nfs)) // 100 GiB
	want := total - 100<<30
	deadline := time.After(10 * time.Second)
	for got := int64(0); got != want; {
		select {
		case got = <-seen:
		case <-deadline:
			t.Fatalf("watch never saw freeSpace %d", want)
		}
	}
	if got := freeSpace(t, c, nfs); got != want {
		t.Errorf("freeSpace %d, want %d", got, want)
	}
	if d := dsInfo(t, s, "nfs-gold"); d.FreeBytes != want {
		t.Errorf("Datastores().FreeBytes %d, want %d", d.FreeBytes, want)
	}

	// 450 GiB does not fit in the 400 GiB left.
	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec("too-big", 450*1024, "", nfs)})
	f := faultOf(result(t, task, err))
	if f == nil || !strings.Contains(f.LocalizedMessage, "Insufficient disk space on datastore 'nfs-gold'") {
		t.Fatalf("too big: fault %+v", f)
	}
	if got := freeSpace(t, c, nfs); got != want {
		t.Errorf("failed create changed freeSpace to %d", got)
	}

	// Delete gives the space back and removes the files.
	file, _ := s.VolumeFile(id)
	task, err = c.cns.DeleteVolume(ctx, []cnstypes.CnsVolumeId{{Id: id}}, true)
	if f := faultOf(result(t, task, err)); f != nil {
		t.Fatalf("delete: %s", f.LocalizedMessage)
	}
	if got := freeSpace(t, c, nfs); got != total {
		t.Errorf("freeSpace after delete %d, want %d", got, total)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("data file still there: %v", err)
	}
	cancel()
	<-watchDone
}

func vmDisks(t *testing.T, c *clients, vm types.ManagedObjectReference) []*types.VirtualDisk {
	t.Helper()
	devices, err := object.NewVirtualMachine(c.vim, vm).Device(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*types.VirtualDisk
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		if d := d.(*types.VirtualDisk); d.VDiskId != nil { // not the OS disk
			out = append(out, d)
		}
	}
	return out
}

// TestAttachLimit: a node VM has 4 SCSI controllers and an OS disk on
// SCSI 0:0, so it takes NodeVolumeSlots (59) volumes, spread over the
// controllers in bus order without unit 7, and refuses the 60th.
func TestAttachLimit(t *testing.T) {
	s := startSim(t, Options{NodeVMs: 1})
	c := connect(t, s)
	vm := vmRef(s.NodeVMs()[0])
	vsan := dsRef(t, s, "vsanDatastore")
	devices, err := object.NewVirtualMachine(c.vim, vm).Device(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bus := map[int32]int32{} // controller key -> bus number
	for _, d := range devices.SelectByType((*types.VirtualSCSIController)(nil)) {
		sc := d.(types.BaseVirtualSCSIController).GetVirtualSCSIController()
		bus[sc.Key] = sc.BusNumber
	}
	if len(bus) != NodeSCSIControllers {
		t.Fatalf("node VM has %d SCSI controllers, want %d", len(bus), NodeSCSIControllers)
	}
	var osDisks int
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		vd := d.(*types.VirtualDisk)
		if vd.VDiskId == nil && bus[vd.ControllerKey] == 0 && vd.UnitNumber != nil && *vd.UnitNumber == 0 {
			osDisks++
		}
	}
	if osDisks != 1 {
		t.Fatalf("node VM has %d OS disks on SCSI 0:0, want 1", osDisks)
	}
	for i := range NodeVolumeSlots {
		id := mustCreate(t, c, createSpec(fmt.Sprintf("limit-%d", i), 1, "", vsan))
		if _, f := attach(t, c, id, vm); f != nil {
			t.Fatalf("attach %d of %d: %s", i+1, NodeVolumeSlots, f.LocalizedMessage)
		}
	}
	slots := map[string]bool{}
	for _, d := range vmDisks(t, c, vm) {
		b, u := bus[d.ControllerKey], *d.UnitNumber
		if u == 7 || (b == 0 && u == 0) || slots[fmt.Sprint(b, ":", u)] {
			t.Errorf("volume disk at SCSI %d:%d (unit 7, the OS disk's unit or taken twice)", b, u)
		}
		slots[fmt.Sprint(b, ":", u)] = true
	}
	if len(slots) != NodeVolumeSlots {
		t.Errorf("%d volume disks, want %d", len(slots), NodeVolumeSlots)
	}
	extra := mustCreate(t, c, createSpec("limit-extra", 1, "", vsan))
	if _, f := attach(t, c, extra, vm); f == nil || !strings.Contains(f.LocalizedMessage, "missing SCSI controller") {
		t.Errorf("attach %d: fault %+v, want CNS's \"missing SCSI controller\"", NodeVolumeSlots+1, f)
	}
}

func attach(t *testing.T, c *clients, id string, vm types.ManagedObjectReference) (string, *types.LocalizedMethodFault) {
	t.Helper()
	task, err := c.cns.AttachVolume(context.Background(), []cnstypes.CnsVolumeAttachDetachSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, Vm: vm}})
	res := result(t, task, err)
	ar, ok := res.(*cnstypes.CnsVolumeAttachResult)
	if !ok {
		t.Fatalf("attach result %T", res)
	}
	return ar.DiskUUID, ar.Fault
}

func detach(t *testing.T, c *clients, id string, vm types.ManagedObjectReference) *types.LocalizedMethodFault {
	t.Helper()
	task, err := c.cns.DetachVolume(context.Background(), []cnstypes.CnsVolumeAttachDetachSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, Vm: vm}})
	return faultOf(result(t, task, err))
}

func deleteVolume(t *testing.T, c *clients, id string) *types.LocalizedMethodFault {
	t.Helper()
	task, err := c.cns.DeleteVolume(context.Background(), []cnstypes.CnsVolumeId{{Id: id}}, true)
	return faultOf(result(t, task, err))
}

func TestAttachDetach(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	nodes := s.NodeVMs()
	n1, n2 := vmRef(nodes[0]), vmRef(nodes[1])
	vsan := dsRef(t, s, "vsanDatastore")
	freeBefore := freeSpace(t, c, vsan)
	a := mustCreate(t, c, createSpec("a", 2048, "", vsan))
	b := mustCreate(t, c, createSpec("b", 4096, "", vsan))
	freeCreated := freeSpace(t, c, vsan)
	if freeCreated != freeBefore-6<<30 {
		t.Errorf("free after creates %d, want %d", freeCreated, freeBefore-6<<30)
	}

	ua, f := attach(t, c, a, n1)
	if f != nil {
		t.Fatalf("attach a: %s", f.LocalizedMessage)
	}
	ub, f := attach(t, c, b, n1)
	if f != nil {
		t.Fatalf("attach b: %s", f.LocalizedMessage)
	}
	if ua == ub || len(ua) != 32 || strings.ToLower(ua) != ua {
		t.Errorf("disk UUIDs %q, %q: want two different 32-hex-digit lowercase UUIDs", ua, ub)
	}
	disks := vmDisks(t, c, n1)
	if len(disks) != 2 {
		t.Fatalf("VM has %d disks, want 2", len(disks))
	}
	for _, d := range disks {
		bk := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		u := diskUUIDHex(bk.Uuid)
		if (u != ua && u != ub) || d.VDiskId == nil || (d.VDiskId.Id != a && d.VDiskId.Id != b) {
			t.Errorf("disk backing uuid %s vdiskid %v; want one of the attach UUIDs and volume IDs", bk.Uuid, d.VDiskId)
		}
		if !strings.Contains(bk.FileName, "fcd/") {
			t.Errorf("disk backing file %s is not the FCD", bk.FileName)
		}
	}
	if got := freeSpace(t, c, vsan); got != freeCreated {
		t.Errorf("attach changed free space: %d, want %d", got, freeCreated)
	}

	// Attaching again to the same VM: same UUID, no second device.
	if again, f := attach(t, c, a, n1); f != nil || again != ua {
		t.Errorf("re-attach: %q, %v; want %q", again, f, ua)
	}
	if n := len(vmDisks(t, c, n1)); n != 2 {
		t.Errorf("re-attach added a device: %d disks", n)
	}
	// Attached elsewhere: ResourceInUse.
	if _, f := attach(t, c, a, n2); f == nil {
		t.Errorf("attach to a second VM succeeded")
	} else if _, ok := f.Fault.(*types.ResourceInUse); !ok {
		t.Errorf("attach elsewhere fault %T, want ResourceInUse", f.Fault)
	}
	// Delete while attached is refused.
	if f := deleteVolume(t, c, a); f == nil {
		t.Errorf("delete of an attached volume succeeded")
	} else if _, ok := f.Fault.(*types.ResourceInUse); !ok || !strings.Contains(f.LocalizedMessage, "attached") {
		t.Errorf("delete attached: %T %q", f.Fault, f.LocalizedMessage)
	}
	// Detach from the wrong VM.
	if f := detach(t, c, a, n2); f == nil || !strings.Contains(f.LocalizedMessage, "not attached") {
		t.Errorf("detach from the wrong VM: %+v", f)
	}
	// Detach, then the device is gone and delete works.
	if f := detach(t, c, a, n1); f != nil {
		t.Fatalf("detach: %s", f.LocalizedMessage)
	}
	disks = vmDisks(t, c, n1)
	if len(disks) != 1 || disks[0].VDiskId.Id != b {
		t.Errorf("after detach VM disks %d, want only b", len(disks))
	}
	if f := detach(t, c, a, n1); f == nil || !strings.Contains(f.LocalizedMessage, "not attached") {
		t.Errorf("second detach: %+v", f)
	}
	// The disk UUID is stable across attaches.
	if again, f := attach(t, c, a, n2); f != nil || again != ua {
		t.Errorf("attach to n2 after detach: %q, %v; want %q", again, f, ua)
	}
	if f := detach(t, c, a, n2); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	if f := deleteVolume(t, c, a); f != nil {
		t.Errorf("delete after detach: %s", f.LocalizedMessage)
	}
	if got := freeSpace(t, c, vsan); got != freeBefore-4<<30 {
		t.Errorf("free after delete %d, want %d", got, freeBefore-4<<30)
	}
}

func TestQueryPaging(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	const n = 23
	var ids []string
	for i := range n {
		ds := dsRef(t, s, []string{"vsanDatastore", "silver-ds"}[i%2])
		spec := createSpec(fmt.Sprintf("vol-%02d", i), 16, "", ds)
		if i%3 == 0 {
			spec.Metadata.ContainerCluster.ClusterId = "other-cluster"
		}
		ids = append(ids, mustCreate(t, c, spec))
	}
	var got []string
	offset := int64(0)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{Cursor: &cnstypes.CnsCursor{Offset: offset, Limit: 5}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Cursor.TotalRecords != n {
			t.Errorf("TotalRecords %d, want %d", res.Cursor.TotalRecords, n)
		}
		if len(res.Volumes) > 5 {
			t.Fatalf("page of %d > limit", len(res.Volumes))
		}
		for _, v := range res.Volumes {
			got = append(got, v.VolumeId.Id)
		}
		if res.Cursor.Offset != offset+int64(len(res.Volumes)) {
			t.Errorf("next offset %d, want %d", res.Cursor.Offset, offset+int64(len(res.Volumes)))
		}
		offset = res.Cursor.Offset
		if len(res.Volumes) < 5 {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("pages returned\n%v\nwant (creation order, each once)\n%v", got, ids)
	}

	// Filters.
	res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{ContainerClusterIds: []string{"other-cluster"}})
	if err != nil || len(res.Volumes) != 8 {
		t.Errorf("cluster filter: %v, %d volumes, want 8", err, len(res.Volumes))
	}
	res, err = c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{Datastores: []types.ManagedObjectReference{dsRef(t, s, "silver-ds")}})
	if err != nil || len(res.Volumes) != 11 {
		t.Errorf("datastore filter: %v, %d volumes, want 11", err, len(res.Volumes))
	}
	res, err = c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: ids[3]}, {Id: ids[4]}}, Names: []string{"vol-04"}})
	if err != nil || len(res.Volumes) != 1 || res.Volumes[0].VolumeId.Id != ids[4] {
		t.Errorf("id+name filter: %v, %+v", err, res.Volumes)
	}
	all, err := c.cns.QueryAllVolume(ctx, cnstypes.CnsQueryFilter{}, cnstypes.CnsQuerySelection{})
	if err != nil || len(all.Volumes) != n {
		t.Errorf("QueryAllVolume: %v, %d", err, len(all.Volumes))
	}
}

func TestUnknownReferencesAreFaults(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	n1 := vmRef(s.NodeVMs()[0])
	id := mustCreate(t, c, createSpec("v", 16, "", dsRef(t, s, "silver-ds")))
	ghostDS := types.ManagedObjectReference{Type: "Datastore", Value: "datastore-9999"}
	ghostVM := types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-9999"}

	task, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec("x", 16, "", ghostDS)})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "datastore-9999 not found") {
		t.Errorf("unknown datastore: %+v", f)
	}
	task, err = c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec("x", 16, "no-such-policy")})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "not found") {
		t.Errorf("unknown policy: %+v", f)
	}
	if _, f := attach(t, c, id, ghostVM); f == nil {
		t.Errorf("attach to unknown VM succeeded")
	} else if _, ok := f.Fault.(*types.ManagedObjectNotFound); !ok {
		t.Errorf("attach to unknown VM: %T", f.Fault)
	}
	if _, f := attach(t, c, "no-such-volume", n1); f == nil {
		t.Errorf("attach of unknown volume succeeded")
	} else if _, ok := f.Fault.(*cnstypes.CnsVolumeNotFoundFault); !ok {
		t.Errorf("attach of unknown volume: %T", f.Fault)
	}
	if f := detach(t, c, id, ghostVM); f == nil {
		t.Errorf("detach from unknown VM succeeded")
	}
	if f := detach(t, c, "no-such-volume", n1); f == nil {
		t.Errorf("detach of unknown volume succeeded")
	}
	if f := deleteVolume(t, c, "no-such-volume"); f == nil {
		t.Errorf("delete of unknown volume succeeded")
	} else if _, ok := f.Fault.(*types.NotFound); !ok {
		t.Errorf("delete unknown: %T", f.Fault)
	}
	task, err = c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: "no-such-volume"}, CapacityInMb: 32}})
	if f := faultOf(result(t, task, err)); f == nil {
		t.Errorf("extend of unknown volume succeeded")
	}
	task, err = c.cns.UpdateVolumeMetadata(ctx, []cnstypes.CnsVolumeMetadataUpdateSpec{{VolumeId: cnstypes.CnsVolumeId{Id: "no-such-volume"},
		Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cnstypes.CnsContainerCluster{ClusterId: "test-cluster"}}}})
	if f := faultOf(result(t, task, err)); f == nil {
		t.Errorf("metadata update of unknown volume succeeded")
	}
	// Still serving.
	if v := queryOne(t, c, id); v.Name != "v" {
		t.Errorf("server state lost: %+v", v)
	}
}

func TestExtend(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	silver := dsRef(t, s, "silver-ds")
	free0 := freeSpace(t, c, silver)
	id := mustCreate(t, c, createSpec("grow", 1024, "", silver))
	n1 := vmRef(s.NodeVMs()[0])
	if _, f := attach(t, c, id, n1); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	task, err := c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 3072}})
	if f := faultOf(result(t, task, err)); f != nil {
		t.Fatalf("extend: %s", f.LocalizedMessage)
	}
	if got := queryOne(t, c, id).BackingObjectDetails.GetCnsBackingObjectDetails().CapacityInMb; got != 3072 {
		t.Errorf("record %d MB, want 3072", got)
	}
	file, _ := s.VolumeFile(id)
	if fi, err := os.Stat(file); err != nil || fi.Size() != 3072<<20 {
		t.Errorf("data file size %v", err)
	}
	if got := freeSpace(t, c, silver); got != free0-3<<30 {
		t.Errorf("free %d, want %d", got, free0-3<<30)
	}
	if d := vmDisks(t, c, n1); len(d) != 1 || d[0].CapacityInBytes != 3072<<20 {
		t.Errorf("VM disk not grown: %+v", d)
	}
	task, err = c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 1024}})
	if f := faultOf(result(t, task, err)); f == nil {
		t.Errorf("shrink succeeded")
	}
	task, err = c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 2 << 20}})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "Insufficient disk space") {
		t.Errorf("extend beyond the datastore: %+v", f)
	}
}

func TestUpdateMetadata(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	id := mustCreate(t, c, createSpec("meta", 16, "", dsRef(t, s, "silver-ds")))
	pvc := &cnstypes.CnsKubernetesEntityMetadata{
		CnsEntityMetadata: cnstypes.CnsEntityMetadata{EntityName: "data-0", ClusterID: "test-cluster",
			Labels: []types.KeyValue{{Key: "app", Value: "db"}}},
		EntityType: string(cnstypes.CnsKubernetesEntityTypePVC), Namespace: "default",
	}
	cluster := func(id string) cnstypes.CnsContainerCluster {
		return cnstypes.CnsContainerCluster{ClusterType: string(cnstypes.CnsClusterTypeKubernetes), ClusterId: id, VSphereUser: s.Username()}
	}
	updateAs := func(cc cnstypes.CnsContainerCluster, e ...cnstypes.BaseCnsEntityMetadata) *types.LocalizedMethodFault {
		task, err := c.cns.UpdateVolumeMetadata(ctx, []cnstypes.CnsVolumeMetadataUpdateSpec{{
			VolumeId: cnstypes.CnsVolumeId{Id: id},
			Metadata: cnstypes.CnsVolumeMetadata{ContainerCluster: cc, EntityMetadata: e},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.WaitForResult(ctx); err != nil { // the task's own fault (a refused spec)
			return &types.LocalizedMethodFault{LocalizedMessage: err.Error()}
		}
		return faultOf(result(t, task, nil))
	}
	update := func(e ...cnstypes.BaseCnsEntityMetadata) {
		if f := updateAs(cluster("test-cluster"), e...); f != nil {
			t.Fatal(f.LocalizedMessage)
		}
	}
	if f := updateAs(cnstypes.CnsContainerCluster{}, pvc); f == nil || !strings.Contains(f.LocalizedMessage, "container cluster") {
		t.Errorf("an update naming no container cluster: %+v", f)
	}
	update(pvc)
	update(pvc) // same entity: replaced, not duplicated
	if got := queryOne(t, c, id).Metadata; len(got.EntityMetadata) != 1 || got.ContainerCluster.ClusterId != "test-cluster" {
		t.Errorf("metadata %+v", got)
	}
	// Labels are replaced whole, not merged.
	relabelled := *pvc
	relabelled.Labels = []types.KeyValue{{Key: "tier", Value: "gold"}}
	update(&relabelled)
	if got := queryOne(t, c, id).Metadata.EntityMetadata; len(got) != 1 || len(got[0].GetCnsEntityMetadata().Labels) != 1 {
		t.Errorf("relabelled: %+v", got)
	}
	update(pvc)
	// Another cluster's entity of the same name: both kept, the other
	// cluster joins the array, the volume's own cluster stays.
	theirs := *pvc
	theirs.ClusterID = "other-cluster"
	if f := updateAs(cluster("other-cluster"), &theirs); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	md := queryOne(t, c, id).Metadata
	var clusters []string
	for _, cc := range md.ContainerClusterArray {
		clusters = append(clusters, cc.ClusterId)
	}
	if len(md.EntityMetadata) != 2 || md.ContainerCluster.ClusterId != "test-cluster" || strings.Join(clusters, ",") != "test-cluster,other-cluster" {
		t.Errorf("two clusters: entities %d, cluster %s, array %v", len(md.EntityMetadata), md.ContainerCluster.ClusterId, clusters)
	}
	res0, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{ContainerClusterIds: []string{"other-cluster"}})
	if err != nil || len(res0.Volumes) != 1 {
		t.Errorf("the volume listed for the other cluster: %v, %d volumes", err, len(res0.Volumes))
	}
	if f := updateAs(cluster("other-cluster"), &cnstypes.CnsKubernetesEntityMetadata{
		CnsEntityMetadata: cnstypes.CnsEntityMetadata{EntityName: "x", ClusterID: "other-cluster", Delete: true}, EntityType: "NODE_OF_SOMETHING"}); f == nil {
		t.Errorf("an entity of an unknown type was taken")
	}
	theirs.Delete = true
	if f := updateAs(cluster("other-cluster"), &theirs); f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{Labels: []types.KeyValue{{Key: "app", Value: "db"}}})
	if err != nil || len(res.Volumes) != 1 {
		t.Errorf("label query: %v %d", err, len(res.Volumes))
	}
	del := *pvc
	del.Delete = true
	update(&del)
	if got := queryOne(t, c, id).Metadata; len(got.EntityMetadata) != 0 {
		t.Errorf("entity not deleted: %+v", got.EntityMetadata)
	}
}

// TestConcurrentQueries runs 16 concurrent create/attach/extend/detach
// callers while another queries; meaningful under -race.
func TestConcurrentQueries(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	ds := dsRef(t, s, "vsanDatastore")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var cwg sync.WaitGroup
	nodes := s.NodeVMs()
	for i := range 16 {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			n1 := vmRef(nodes[i%len(nodes)])
			id := mustCreate(t, c, createSpec(fmt.Sprintf("c-%d", i), 16, "", ds))
			if _, f := attach(t, c, id, n1); f != nil {
				t.Errorf("attach: %s", f.LocalizedMessage)
				return
			}
			task, err := c.cns.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: cnstypes.CnsVolumeId{Id: id}, CapacityInMb: 32}})
			if f := faultOf(result(t, task, err)); f != nil {
				t.Errorf("extend: %s", f.LocalizedMessage)
			}
			if f := detach(t, c, id, n1); f != nil {
				t.Errorf("detach: %s", f.LocalizedMessage)
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	res, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{})
	if err != nil || len(res.Volumes) != 16 {
		t.Errorf("after concurrent creates: %v, %d volumes", err, len(res.Volumes))
	}
	for _, n := range nodes {
		if d := len(vmDisks(t, c, vmRef(n))); d != 0 {
			t.Errorf("VM %s still has %d disks", n.Name, d)
		}
	}
	if got, want := freeSpace(t, c, ds), dsInfo(t, s, "vsanDatastore").CapacityBytes-int64(len(nodes))*osDiskKB*1024-16*32<<20; got != want {
		t.Errorf("free space %d, want %d", got, want)
	}
}
