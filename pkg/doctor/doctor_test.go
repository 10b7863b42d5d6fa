package doctor

import (
	"bytes"
	"context"
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
	skipShort(t, "starts the embedded vCenter")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sim.Start(ctx, sim.Options{Dir: t.TempDir()})
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
