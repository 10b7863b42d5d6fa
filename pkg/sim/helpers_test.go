package sim

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/pbm"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type clients struct {
	vim *vim25.Client
	cns *cns.Client
	pbm *pbm.Client
}

func startSim(t testing.TB, opts Options) *Sim {
	t.Helper()
	skipShort(t, "starts the embedded vCenter")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// connect logs in over SOAP, verifying TLS by the thumbprint (not insecure).
func connect(t testing.TB, s *Sim) *clients {
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
		t.Fatalf("vim25 client: %v", err)
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), s.Password())); err != nil {
		t.Fatalf("login: %v", err)
	}
	c := &clients{vim: vc}
	if c.cns, err = cns.NewClient(ctx, vc); err != nil {
		t.Fatalf("cns client: %v", err)
	}
	if c.pbm, err = pbm.NewClient(ctx, vc); err != nil {
		t.Fatalf("pbm client: %v", err)
	}
	t.Cleanup(func() { _ = session.NewManager(vc).Logout(context.Background()) })
	return c
}

func (c *clients) client() *govmomi.Client {
	return &govmomi.Client{Client: c.vim, SessionManager: session.NewManager(c.vim)}
}

func dsRef(t testing.TB, s *Sim, name string) types.ManagedObjectReference {
	t.Helper()
	for _, d := range s.Datastores() {
		if d.Name == name {
			return types.ManagedObjectReference{Type: "Datastore", Value: d.Ref}
		}
	}
	t.Fatalf("no datastore %s", name)
	return types.ManagedObjectReference{}
}

func dsInfo(t testing.TB, s *Sim, name string) DatastoreInfo {
	t.Helper()
	for _, d := range s.Datastores() {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no datastore %s", name)
	return DatastoreInfo{}
}

func vmRef(n NodeVM) types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VirtualMachine", Value: n.Ref}
}

func createSpec(name string, sizeMB int64, policyID string, ds ...types.ManagedObjectReference) cnstypes.CnsVolumeCreateSpec {
	spec := cnstypes.CnsVolumeCreateSpec{
		Name:       name,
		VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		Datastores: ds,
		Metadata: cnstypes.CnsVolumeMetadata{
			ContainerCluster: cnstypes.CnsContainerCluster{
				ClusterType: string(cnstypes.CnsClusterTypeKubernetes),
				ClusterId:   "test-cluster",
				VSphereUser: "administrator@vsphere.local",
			},
		},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB},
		},
	}
	if policyID != "" {
		spec.Profile = []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: policyID}}
	}
	return spec
}

// result runs a CNS task to completion and returns its single volume result.
func result(t testing.TB, task *object.Task, err error) cnstypes.BaseCnsVolumeOperationResult {
	t.Helper()
	if err != nil {
		t.Fatalf("start task: %v", err)
	}
	ctx := context.Background()
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		t.Fatalf("task failed: %v", err)
	}
	res, err := cns.GetTaskResult(ctx, info)
	if err != nil {
		t.Fatalf("task result: %v", err)
	}
	return res
}

func faultOf(r cnstypes.BaseCnsVolumeOperationResult) *types.LocalizedMethodFault {
	return r.GetCnsVolumeOperationResult().Fault
}

func mustCreate(t testing.TB, c *clients, spec cnstypes.CnsVolumeCreateSpec) string {
	t.Helper()
	task, err := c.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{spec})
	res := result(t, task, err)
	if f := faultOf(res); f != nil {
		t.Fatalf("create %s: %s (%T)", spec.Name, f.LocalizedMessage, f.Fault)
	}
	return res.GetCnsVolumeOperationResult().VolumeId.Id
}

func policyID(t testing.TB, c *clients, name string) string {
	t.Helper()
	id, err := c.pbm.ProfileIDByName(context.Background(), name)
	if err != nil {
		t.Fatalf("policy %s: %v", name, err)
	}
	return id
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func userInfo(s *Sim) *url.Userinfo { return url.UserPassword(s.Username(), s.Password()) }

// skipShort skips a test that is not in the fast tier (`make unit`,
// go test -short), saying why.
func skipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + ": not in -short (make unit); make test runs it")
	}
}
