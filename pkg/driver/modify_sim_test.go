package driver_test

import (
	"context"
	"net/url"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/pbm"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// vsphere logs in to the embedded vCenter with govmomi, as an admin's tool
// would: to look at CNS behind the driver's back, or to make volumes and
// disks the driver did not make.
type vsphere struct {
	vim *vim25.Client
	cns *cns.Client
	pbm *pbm.Client
}

func connectVSphere(t *testing.T, s *sim.Sim) *vsphere {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, s.Thumbprint())
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), s.Password())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = session.NewManager(vc).Logout(context.Background()) })
	v := &vsphere{vim: vc}
	if v.cns, err = cns.NewClient(ctx, vc); err != nil {
		t.Fatal(err)
	}
	if v.pbm, err = pbm.NewClient(ctx, vc); err != nil {
		t.Fatal(err)
	}
	return v
}

// cnsVolume reads a volume's record straight from CNS.
func (v *vsphere) cnsVolume(t *testing.T, id string) cnstypes.CnsVolume {
	t.Helper()
	res, err := v.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: id}}})
	if err != nil || len(res.Volumes) != 1 {
		t.Fatalf("CNS query of volume %s: %v, %d volumes", id, err, len(res.Volumes))
	}
	return res.Volumes[0]
}

func (v *vsphere) policyID(t *testing.T, name string) string {
	t.Helper()
	id, err := v.pbm.ProfileIDByName(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) datastoreNamed(t *testing.T, name string) sim.DatastoreInfo {
	t.Helper()
	for _, ds := range e.sim.Datastores() {
		if ds.Name == name {
			return ds
		}
	}
	t.Fatalf("no datastore %s", name)
	return sim.DatastoreInfo{}
}

func modifyReq(id, policy string) *csi.ControllerModifyVolumeRequest {
	return &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: map[string]string{"storagePolicyName": policy}}
}

// TestModifyVolumePolicy: a Silver volume on vsanDatastore (which satisfies
// Silver and Gold) changed to Gold has Gold in CNS; a Silver volume on
// silver-ds can't become Gold: InvalidArgument naming the datastore, and
// CNS still says Silver.
func TestModifyVolumePolicy(t *testing.T) {
	e := newEnv(t, 3)
	vs := connectVSphere(t, e.sim)
	ctx := context.Background()
	goldID, silverID := vs.policyID(t, "Gold"), vs.policyID(t, "Silver")

	onVSAN, err := e.d.CreateVolume(ctx, createReq("pvc-silver-vsan", gib, map[string]string{
		"storagepolicyname": "Silver", "datastoreurl": e.datastoreNamed(t, "vsanDatastore").URL}))
	if err != nil {
		t.Fatal(err)
	}
	id := onVSAN.GetVolume().GetVolumeId()
	if got := vs.cnsVolume(t, id).StoragePolicyId; got != silverID {
		t.Fatalf("created with policy %s, want Silver %s", got, silverID)
	}
	for range 2 { // idempotent
		if _, err := e.d.ControllerModifyVolume(ctx, modifyReq(id, "Gold")); err != nil {
			t.Fatal(err)
		}
	}
	if got := vs.cnsVolume(t, id); got.StoragePolicyId != goldID || got.DatastoreUrl != e.datastoreNamed(t, "vsanDatastore").URL {
		t.Fatalf("after the change CNS has policy %s on %s, want Gold %s on vsanDatastore", got.StoragePolicyId, got.DatastoreUrl, goldID)
	}

	onSilver, err := e.d.CreateVolume(ctx, createReq("pvc-silver-ds", gib, map[string]string{
		"storagepolicyname": "Silver", "datastoreurl": e.datastoreNamed(t, "silver-ds").URL}))
	if err != nil {
		t.Fatal(err)
	}
	sid := onSilver.GetVolume().GetVolumeId()
	_, err = e.d.ControllerModifyVolume(ctx, modifyReq(sid, "Gold"))
	wantCode(t, err, codes.InvalidArgument, "silver-ds")
	t.Logf("refused: %v", err)
	if got := vs.cnsVolume(t, sid).StoragePolicyId; got != silverID {
		t.Fatalf("after the refused change CNS has policy %s, want Silver %s", got, silverID)
	}

	_, err = e.d.ControllerModifyVolume(ctx, modifyReq(sid, "Platinum"))
	wantCode(t, err, codes.InvalidArgument, "Platinum")
	_, err = e.d.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: sid, MutableParameters: map[string]string{"iops": "100"}})
	wantCode(t, err, codes.InvalidArgument, "storagepolicyname")
	_, err = e.d.ControllerModifyVolume(ctx, modifyReq("9d7a4c2e-0000-4000-8000-000000000000", "Gold"))
	wantCode(t, err, codes.NotFound, "")

	// A VolumeAttributesClass at creation overrides the StorageClass's policy.
	req := createReq("pvc-vac", gib, gold)
	req.MutableParameters = map[string]string{"storagepolicyname": "Silver"}
	vac, err := e.d.CreateVolume(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := vs.cnsVolume(t, vac.GetVolume().GetVolumeId()).StoragePolicyId; got != silverID {
		t.Fatalf("created with a Silver VolumeAttributesClass: policy %s", got)
	}
}

// The sim's reconfiguration is also refused without the driver's check.
func TestSimRefusesIncompatiblePolicy(t *testing.T) {
	e := newEnv(t, 1)
	vs := connectVSphere(t, e.sim)
	ctx := context.Background()
	vol, err := e.d.CreateVolume(ctx, createReq("pvc-silver", gib, map[string]string{
		"storagepolicyname": "Silver", "datastoreurl": e.datastoreNamed(t, "silver-ds").URL}))
	if err != nil {
		t.Fatal(err)
	}
	task, err := vs.cns.ReconfigVolumePolicy(ctx, []cnstypes.CnsVolumePolicyReconfigSpec{{
		VolumeId: cnstypes.CnsVolumeId{Id: vol.GetVolume().GetVolumeId()},
		Profile:  profile(vs.policyID(t, "Gold")),
	}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cns.GetTaskResult(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	f := res.GetCnsVolumeOperationResult().Fault
	if f == nil || !contains(f.LocalizedMessage, "silver-ds") {
		t.Fatalf("CNS reconfigured Silver on silver-ds to Gold: fault %+v", f)
	}
}
