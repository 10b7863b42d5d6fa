package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vsphere-cns/vsphere-csi/pkg/doctor"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// `vsphere-csi doctor` against the embedded vCenter: exit status 0 on a
// healthy one with --output json an array of findings all OK; 1 with the
// problem in the array once a node VM's EnableUUID is off; 2 when vCenter
// can't be reached, and for a bad --output.
func TestDoctorExitStatusAndJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded vCenter: not in -short (make unit); make test runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vc")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "doctor-cmd", false); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, vm := range s.NodeVMs() {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: vm.Name}, Spec: corev1.NodeSpec{ProviderID: "vsphere://" + vm.UUID}})
	}
	objs = append(objs, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gold"}, Provisioner: doctor.DriverName,
		Parameters: map[string]string{"storagepolicyname": "Gold"}})
	kc := fake.NewSimpleClientset(objs...)
	connect := func(string) (kubernetes.Interface, error) { return kc, nil }
	run := func(args ...string) (int, []doctor.Finding, string) {
		var out, errOut bytes.Buffer
		code := runDoctor(ctx, args, &out, &errOut, connect)
		var fs []doctor.Finding
		if strings.Contains(strings.Join(args, " "), "json") && out.Len() > 0 {
			if err := json.Unmarshal(out.Bytes(), &fs); err != nil {
				t.Fatalf("output is not a JSON array of findings: %v\n%s", err, out.String())
			}
		}
		return code, fs, out.String() + errOut.String()
	}

	code, fs, text := run("--config", conf, "--output", "json")
	if code != 0 || len(fs) == 0 || doctor.Problems(fs) != 0 {
		t.Fatalf("healthy: exit %d, %d findings, %d problems:\n%s", code, len(fs), doctor.Problems(fs), text)
	}
	code, _, text = run("--config", conf)
	if code != 0 || !strings.Contains(text, "OK       enable-uuid: VM "+s.NodeVMs()[0].Name) {
		t.Fatalf("healthy, text: exit %d:\n%s", code, text)
	}

	vm := s.NodeVMs()[0].Name
	if err := s.SetEnableUUID(ctx, vm, false); err != nil {
		t.Fatal(err)
	}
	code, fs, text = run("--config", conf, "--output=json")
	found := false
	for _, f := range fs {
		found = found || (f.Check == doctor.CheckEnableUUID && f.Object == "VM "+vm && !f.OK && f.Fix != "")
	}
	if code != 1 || !found || doctor.Problems(fs) != 1 {
		t.Fatalf("EnableUUID off: exit %d, found %v:\n%s", code, found, text)
	}
	code, _, text = run("--config", conf)
	if code != 1 || !strings.Contains(text, "PROBLEM  enable-uuid: VM "+vm+": ") || !strings.Contains(text, "(fix: ") {
		t.Fatalf("EnableUUID off, text: exit %d:\n%s", code, text)
	}

	if code, _, text = run("--config", conf, "--output", "yaml"); code != 2 {
		t.Errorf("--output yaml: exit %d, want 2:\n%s", code, text)
	}
	// vCenter unreachable: the same configuration, a port nothing listens on.
	ini, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, "gone.conf")
	bad := strings.Replace(string(ini), fmt.Sprintf("port = %q", fmt.Sprint(s.Port())), `port = "1"`, 1)
	if bad == string(ini) {
		t.Fatalf("no port line in\n%s", ini)
	}
	if err := os.WriteFile(gone, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, text = run("--config", gone, "--output", "json"); code != 2 || !strings.Contains(text, "could not check") {
		t.Errorf("vCenter unreachable: exit %d, want 2:\n%s", code, text)
	}
}
