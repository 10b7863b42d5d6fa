// Package sanity runs the csi-test sanity suite against the driver (controller
// and node in one process) on the embedded vCenter, with real loop devices,
// real mkfs and real mounts. It needs root. Ginkgo runs one suite per
// process, so each access type has a test package of its own: ./mount and
// ./block (go test ./test/sanity/...).
package sanity

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// Run runs the whole suite with volumes of accessType ("mount" or "block").
func Run(t *testing.T, accessType string) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the embedded vCenter makes loop devices and the node plugin mounts them (CI runs as root)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), Hypervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vcCfg, err := config.Parse(strings.NewReader(s.ConfigINI(app.SimClusterID, false)), "embedded vCenter")
	if err != nil {
		t.Fatal(err)
	}
	vm := s.NodeVMs()[0]
	d, closeAll, err := app.New(ctx, app.Config{
		Mode: driver.ModeAll, Version: "sanity", NodeID: vm.UUID, ByIDDir: vm.ByIDDir,
	}, vcCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	l, err := driver.Listen(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx, l, nil) }()
	defer func() {
		cancel()
		<-served
	}()

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 128 << 20
	cfg.TestVolumeParameters = map[string]string{"storagepolicyname": "Gold"}
	// A VolumeAttributesClass's parameters (MODIFY_VOLUME specs): a policy
	// every datastore satisfies, so a change in place always fits.
	cfg.TestVolumeMutableParameters = map[string]string{"storagepolicyname": "VM Encryption Policy"}
	cfg.TestVolumeAccessType = accessType
	cfg.IdempotentCount = 2
	// The embedded vCenter's node VMs have 4 PVSCSI controllers and an OS
	// disk, as real ones: the 60th attach fails where NodeGetInfo says 59.
	cfg.TestNodeVolumeAttachLimit = true
	sanity.Test(t, cfg)
}
