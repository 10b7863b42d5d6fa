package walkthrough

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mkfs and mount (CI runs as root)")
	}
}

// checkNothingLeft fails when loop devices or mounts under dir survive.
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	loops, err := LoopDevicesOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(loops)+len(mounts) > 0 {
		t.Fatalf("left behind: loop devices %v, mounts %v", loops, mounts)
	}
}

// TestWalkthroughInProcess: the driver (controller and node) in this process.
func TestWalkthroughInProcess(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), Hypervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, err := config.Parse(strings.NewReader(s.ConfigINI("walkthrough", false)), "embedded vCenter")
	if err != nil {
		t.Fatal(err)
	}
	vm := s.NodeVMs()[0]
	d, closeAll, err := app.New(ctx, app.Config{Mode: driver.ModeAll, Version: "walkthrough", NodeID: vm.UUID, ByIDDir: vm.ByIDDir}, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	l, err := driver.Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- d.Serve(serveCtx, l, nil) }()

	var out bytes.Buffer
	err = Run(ctx, Env{ControllerEndpoint: endpoint, NodeEndpoint: endpoint, Sim: s, Node: vm,
		WorkDir: filepath.Join(dir, "work"), Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	stop()
	<-served
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}

// TestWalkthroughSeparateProcesses: as in a cluster, the controller and the node
// plugin are processes of their own, sharing one embedded vCenter over SOAP.
func TestWalkthroughSeparateProcesses(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binary := buildDriver(ctx, t, dir)
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), Hypervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "walkthrough", false); err != nil {
		t.Fatal(err)
	}
	vm := s.NodeVMs()[1]
	var logs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	ctrl, err := StartDriver(ctx, binary, "controller", conf, vm, dir, &syncWriter{w: &logs})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Stop()
	nodePlugin, err := StartDriver(ctx, binary, "node", conf, vm, dir, &syncWriter{w: &logs})
	if err != nil {
		t.Fatal(err)
	}
	defer nodePlugin.Stop()

	var out bytes.Buffer
	err = Run(ctx, Env{ControllerEndpoint: ctrl.Endpoint, NodeEndpoint: nodePlugin.Endpoint, Sim: s, Node: vm,
		WorkDir: filepath.Join(dir, "work"), Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Stop(); err != nil {
		t.Errorf("controller: %v", err)
	}
	if err := nodePlugin.Stop(); err != nil {
		t.Errorf("node plugin: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir)
}
