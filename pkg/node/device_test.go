package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/node/nodetest"
)

// TestFindDeviceWaits: the link appears while FindDevice waits.
func TestFindDeviceWaits(t *testing.T) {
	f := nodetest.NewFakeWith(t.TempDir(), nodetest.FakeOptions{Mounter: node.Options{DeviceWait: 5 * time.Second}})
	// A disk whose link is removed and put back later.
	d := f.AddDisk("6000c29d111122223333444455556666", 1<<30)
	link := node.DeviceLink(f.ByIDDir(), d.UUID)
	os.Remove(link)
	go func() {
		time.Sleep(150 * time.Millisecond)
		os.Symlink(d.Path, link)
	}()
	start := time.Now()
	dev, err := f.FindDevice(context.Background(), f.ByIDDir(), "6000C29D-1111-2222-3333-444455556666")
	if err != nil || dev.Path != d.Path || dev.SizeBytes != 1<<30 || dev.Link != link {
		t.Fatalf("FindDevice = %+v, %v; want %s", dev, err, d.Path)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("found after %s: polling too slowly", time.Since(start))
	}
}

func TestFindDeviceErrors(t *testing.T) {
	f := nodetest.NewFake(t.TempDir())
	ctx := context.Background()
	if _, err := f.FindDevice(ctx, f.ByIDDir(), "6000c29d111122223333444455556666"); !errors.Is(err, node.ErrDeviceNotFound) {
		t.Errorf("missing disk: %v, want node.ErrDeviceNotFound", err)
	}
	// A link to a regular file.
	id := "6000c29d11112222333344445555aaaa"
	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, nil, 0o600)
	os.Symlink(plain, node.DeviceLink(f.ByIDDir(), id))
	if _, err := f.FindDevice(ctx, f.ByIDDir(), id); !errors.Is(err, node.ErrNotBlockDevice) {
		t.Errorf("link to a file: %v, want node.ErrNotBlockDevice", err)
	}
	// A disk of size 0.
	d := f.AddDisk("6000c29d11112222333344445555bbbb", 0)
	if _, err := f.FindDevice(ctx, f.ByIDDir(), d.UUID); !errors.Is(err, node.ErrNotBlockDevice) {
		t.Errorf("empty disk: %v, want node.ErrNotBlockDevice", err)
	}
	// The caller gives up.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	f = nodetest.NewFakeWith(t.TempDir(), nodetest.FakeOptions{Mounter: node.Options{DeviceWait: time.Minute}})
	if _, err := f.FindDevice(cctx, f.ByIDDir(), "6000c29d11112222333344445555cccc"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// TestRescanHosts: the SCSI hosts are rescanned while waiting, and
// a machine without them is no error.
func TestRescanHosts(t *testing.T) {
	f := nodetest.NewFake(t.TempDir())
	scan := filepath.Join(f.SysDir(), "class", "scsi_host", "host0", "scan")
	os.MkdirAll(filepath.Dir(scan), 0o755)
	os.WriteFile(scan, nil, 0o600)
	if _, err := f.FindDevice(context.Background(), f.ByIDDir(), "6000c29d111122223333444455556666"); !errors.Is(err, node.ErrDeviceNotFound) {
		t.Errorf("no such disk: %v, want node.ErrDeviceNotFound", err)
	}
	if b, _ := os.ReadFile(scan); string(b) != "- - -" {
		t.Errorf("scan file holds %q, want \"- - -\"", b)
	}
	// Without SCSI hosts to rescan: the same answer, no other error.
	if err := os.RemoveAll(filepath.Join(f.SysDir(), "class")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.FindDevice(context.Background(), f.ByIDDir(), "6000c29d111122223333444455556666"); !errors.Is(err, node.ErrDeviceNotFound) {
		t.Errorf("no SCSI hosts: %v, want node.ErrDeviceNotFound", err)
	}
}
