package doctor

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

func skipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + ": not in -short (make unit); make test runs it")
	}
}

// env is the embedded vCenter and a cluster of its node VMs: a CSINode
// per VM, a block class (Gold) and a ReadWriteMany class (Gold, nfs4).
type env struct {
	sim  *sim.Sim
	opts vcenter.Options
	kube *fake.Clientset
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, sim.Options{})
}

func newEnvWith(t *testing.T, so sim.Options) *env {
	t.Helper()
	skipShort(t, "starts the embedded vCenter")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	so.Dir = t.TempDir()
	s, err := sim.Start(ctx, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var objs []runtime.Object
	for _, vm := range s.NodeVMs() {
		objs = append(objs,
			&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: vm.Name}},
			&storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: vm.Name}, Spec: storagev1.CSINodeSpec{
				Drivers: []storagev1.CSINodeDriver{{Name: DriverName, NodeID: vm.UUID}},
			}})
	}
	objs = append(objs,
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gold"}, Provisioner: DriverName,
			Parameters: map[string]string{"storagePolicyName": "Gold"}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gold-rwx"}, Provisioner: DriverName,
			Parameters: map[string]string{"storagepolicyname": "Gold", "csi.storage.k8s.io/fstype": "nfs4"}},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Provisioner: "example.com/other"},
	)
	return &env{
		sim: s,
		opts: vcenter.Options{
			Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
			Thumbprint: s.Thumbprint(), Datacenters: []string{s.Datacenter()}, ClusterID: "doctor-test",
		},
		kube: fake.NewSimpleClientset(objs...),
	}
}

func (e *env) run(t *testing.T) []Finding {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fs, err := Run(ctx, e.opts, e.kube)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var b bytes.Buffer
	_ = WriteText(&b, fs)
	t.Logf("doctor:\n%s", b.String())
	return fs
}

func problems(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if !f.OK {
			out = append(out, f)
		}
	}
	return out
}

func TestHealthy(t *testing.T) {
	e := newEnv(t)
	fs := e.run(t)
	if p := problems(fs); len(p) > 0 {
		t.Fatalf("problems on a healthy vCenter: %+v", p)
	}
}

// TestZones: with topology categories, a volume goes to a datastore of
// its pod's zone, so a class is healthy when each zone with node VMs has a
// usable datastore, none reachable from every node VM needed; a class
// whose datastores are all in one zone is a problem naming the other.
func TestZones(t *testing.T) {
	e := newEnvWith(t, sim.Options{NodeVMs: 2, ZoneBNodeVMs: 1})
	e.opts.TopologyCategories = []string{sim.RegionCategory, sim.ZoneCategory}
	if _, err := e.kube.StorageV1().StorageClasses().Create(context.Background(), &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "zone-a-only"}, Provisioner: DriverName,
		Parameters: map[string]string{"storagepolicyname": "Gold", "datastoreurl": e.datastoreURL(t, "vsanDatastore")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fs := e.run(t)
	p := only(t, fs, [2]string{CheckDatastores, "StorageClass zone-a-only"})
	if len(p) == 1 && !strings.Contains(p[0].Problem, "zone "+sim.RegionCategory+"="+sim.Region+","+sim.ZoneCategory+"="+sim.ZoneB) {
		t.Errorf("the zone-a-only class's problem does not name zone-b: %q", p[0].Problem)
	}
}

func (e *env) datastoreURL(t *testing.T, name string) string {
	t.Helper()
	for _, d := range e.sim.Datastores() {
		if d.Name == name {
			return d.URL
		}
	}
	t.Fatalf("no datastore %s", name)
	return ""
}

// only asserts that the problems found are exactly the wanted ones: each
// a finding of that check on that object, whose fix is not empty.
func only(t *testing.T, fs []Finding, want ...[2]string) []Finding {
	t.Helper()
	p := problems(fs)
	got := map[[2]string]bool{}
	for _, f := range p {
		got[[2]string{f.Check, f.Object}] = true
		if f.Fix == "" || f.Problem == "" {
			t.Errorf("finding without problem or fix: %+v", f)
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("no problem %s on %s; problems: %+v", w[0], w[1], p)
		}
	}
	if len(p) != len(want) {
		t.Errorf("%d problems, want %d: %+v", len(p), len(want), p)
	}
	return p
}

// The misconfigurations the doctor is for, each made in the embedded
// vCenter as an admin makes it, each found, and nothing else.
func TestFindsEachMisconfiguration(t *testing.T) {
	node := func(e *env) string { return e.sim.NodeVMs()[0].Name }
	cases := []struct {
		name  string
		setup func(context.Context, *env) error
		want  func(*env) [][2]string
		// fix must mention this
		fix func(*env) string
	}{
		{
			name:  "EnableUUID off",
			setup: func(ctx context.Context, e *env) error { return e.sim.SetEnableUUID(ctx, node(e), false) },
			want:  func(e *env) [][2]string { return [][2]string{{CheckEnableUUID, "VM " + node(e)}} },
			fix:   func(*env) string { return "disk.EnableUUID = TRUE" },
		},
		{
			name:  "old hardware version",
			setup: func(_ context.Context, e *env) error { return e.sim.SetHardwareVersion(node(e), 13) },
			want:  func(e *env) [][2]string { return [][2]string{{CheckHardwareVersion, "VM " + node(e)}} },
			fix:   func(*env) string { return "hardware version 15" },
		},
		{
			name:  "no free SCSI slot",
			setup: func(ctx context.Context, e *env) error { return e.sim.FillSCSISlots(ctx, node(e)) },
			want:  func(e *env) [][2]string { return [][2]string{{CheckSCSISlots, "VM " + node(e)}} },
			fix:   func(*env) string { return "Paravirtual SCSI controller" },
		},
		{
			name: "missing privilege on a node VM",
			setup: func(ctx context.Context, e *env) error {
				return e.sim.DenyPrivilege(ctx, node(e), "VirtualMachine.Config.AddExistingDisk")
			},
			want: func(e *env) [][2]string { return [][2]string{{CheckPrivileges, "VM " + node(e)}} },
			fix:  func(*env) string { return "VirtualMachine.Config.AddExistingDisk" },
		},
		{
			name: "missing privilege on a datastore",
			setup: func(ctx context.Context, e *env) error {
				return e.sim.DenyPrivilege(ctx, "nfs-gold", "Datastore.FileManagement")
			},
			want: func(*env) [][2]string { return [][2]string{{CheckPrivileges, "datastore nfs-gold"}} },
			fix:  func(*env) string { return "CNS-DATASTORE" },
		},
		{
			name:  "File Service off",
			setup: func(_ context.Context, e *env) error { return e.sim.SetFileService(sim.ZoneA, false) },
			want:  func(*env) [][2]string { return [][2]string{{CheckFileService, "StorageClass gold-rwx"}} },
			fix:   func(*env) string { return "File Service" },
		},
		{
			name: "wrong thumbprint",
			setup: func(_ context.Context, e *env) error {
				e.opts.Thumbprint = strings.Repeat("AB:", 19) + "AB"
				return nil
			},
			want: func(e *env) [][2]string {
				return [][2]string{{CheckTLS, e.sim.HostPort()}}
			},
			fix: func(e *env) string { return e.sim.Thumbprint() },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := tc.setup(ctx, e); err != nil {
				t.Fatal(err)
			}
			p := only(t, e.run(t), tc.want(e)...)
			for _, f := range p {
				if !strings.Contains(f.Fix+f.Problem, tc.fix(e)) {
					t.Errorf("finding does not say %q: %+v", tc.fix(e), f)
				}
			}
		})
	}
}
