package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// TestRotatedSecretTakenWithoutRestart (issue 11, finding 5): the vCenter
// password changes, then the mounted config file does; the same controller
// logs in with the new password. Any other change asks for a restart.
func TestRotatedSecretTakenWithoutRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	path := filepath.Join(t.TempDir(), "csi-vsphere.conf")
	if err := s.WriteConfig(path, "test-cluster", false); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vcenter.New(ctx, VCenterOptions(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close(context.Background())
	restarted := make(chan struct{})
	go watchConfig(ctx, path, 50*time.Millisecond, cfg, vc, func() { close(restarted) })

	s.SetPassword("R0tated-Passw0rd!")
	if _, err := s.EndSessions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vc.FindVolumeByName(ctx, "x"); !errors.Is(err, vcenter.ErrNotAuthenticated) {
		t.Fatalf("before the Secret changes: %v, want ErrNotAuthenticated", err)
	}
	if err := s.WriteConfig(path, "test-cluster", false); err != nil { // the rotated Secret, mounted
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := vc.FindVolumeByName(ctx, "x")
		if errors.Is(err, vcenter.ErrVolumeNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new password was not taken: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-restarted:
		t.Fatal("a new password asked for a restart")
	default:
	}

	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "test-cluster", "other-cluster", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted:
	case <-time.After(20 * time.Second):
		t.Fatal("a new cluster-id did not ask for a restart")
	}
}
