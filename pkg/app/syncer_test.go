package app

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// TestOrphansListing: `vsphere-csi orphans` lists the cluster's CNS volume
// that no PV names and the PV whose volume is gone, and nothing else (not
// another cluster's volume, not a volume with its PV).
func TestOrphansListing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	ours, err := s.SeedVolumes(2, "pvc", "test-cluster", "vSAN Default Storage Policy", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SeedVolumes(1, "theirs", "other-cluster", "vSAN Default Storage Policy", 1); err != nil {
		t.Fatal(err)
	}
	kc := fake.NewClientset()
	pv := func(name, handle string) *v1.PersistentVolume {
		p := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
		p.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: driver.Name, VolumeHandle: handle}
		p.Status.Phase = v1.VolumeAvailable
		return p
	}
	for _, p := range []*v1.PersistentVolume{pv("pvc-0", ours[0]), pv("lost", "5f0c7a9e-0000-4000-8000-000000000001")} {
		if _, err := kc.CoreV1().PersistentVolumes().Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse(strings.NewReader(s.ConfigINI("test-cluster", false)), "test")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r, err := Orphans(ctx, cfg, kc, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if len(r.Orphans) != 1 || r.Orphans[0].VolumeID != ours[1] || r.Orphans[0].Name != "pvc-1" {
		t.Errorf("orphans %+v; want only %s (pvc-1)", r.Orphans, ours[1])
	}
	if len(r.Missing) != 1 || r.Missing[0].PV != "lost" {
		t.Errorf("missing %+v; want only PV lost", r.Missing)
	}
	if !strings.Contains(out.String(), ours[1]) || !strings.Contains(out.String(), "lost") || strings.Contains(out.String(), ours[0]) {
		t.Errorf("listing:\n%s", out.String())
	}
}
