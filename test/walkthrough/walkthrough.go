// Package walkthrough is the getting-started walkthrough told over CSI: a Gold 5Gi ReadWriteOnce
// volume is created, attached, formatted, mounted, written to, detached,
// attached again with its data intact, and deleted with nothing left behind.
// `make demo` tells it to a person; the tests tell it to an assertion.
package walkthrough

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// Env is where the walkthrough happens.
type Env struct {
	// ControllerEndpoint and NodeEndpoint are the driver's CSI sockets
	// (unix:///…); the same one when a process serves both.
	ControllerEndpoint, NodeEndpoint string
	// Sim is the embedded vCenter the driver talks to; the walkthrough reads its
	// inventory to explain the placement and to check that files are gone.
	Sim *sim.Sim
	// Node is the node VM the node plugin plays.
	Node sim.NodeVM
	// WorkDir holds the staging and target paths.
	WorkDir string
	// Out receives the narration (io.Discard in tests that only assert).
	Out io.Writer
}

// Payload is what the walkthrough writes into the volume and reads back.
const Payload = "Data written by the getting-started walkthrough; it must survive detach and re-attach.\n"

type teller struct {
	out  io.Writer
	step int
}

func (t *teller) say(format string, args ...any) {
	t.step++
	fmt.Fprintf(t.out, "\n%2d. %s\n", t.step, fmt.Sprintf(format, args...))
}

func (t *teller) detail(format string, args ...any) {
	fmt.Fprintf(t.out, "    %s\n", fmt.Sprintf(format, args...))
}

func dial(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix:"+strings.TrimPrefix(endpoint, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Run walks through it. It returns at the first step that does not go as it
// should, after trying to clean up.
func Run(ctx context.Context, e Env) (err error) {
	t := &teller{out: e.Out}
	cc, err := dial(e.ControllerEndpoint)
	if err != nil {
		return err
	}
	defer cc.Close()
	nc, err := dial(e.NodeEndpoint)
	if err != nil {
		return err
	}
	defer nc.Close()
	ids, ctrl, node := csi.NewIdentityClient(cc), csi.NewControllerClient(cc), csi.NewNodeClient(nc)

	info, err := ids.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil {
		return fmt.Errorf("GetPluginInfo: %w", err)
	}
	t.say("The driver %s %s answers on %s.", info.GetName(), info.GetVendorVersion(), e.ControllerEndpoint)

	t.say("A StorageClass gold-sc (storagepolicyname: Gold) and a PVC persistent-vmdk (ReadWriteOnce, 5Gi): CreateVolume.")
	// What placement should choose: of the Gold-compatible datastores
	// mounted on every host, the one with the most free space.
	var goldDS []string
	var best sim.DatastoreInfo
	hosts := 0
	for _, ds := range e.Sim.Datastores() {
		hosts = max(hosts, len(ds.Hosts))
	}
	for _, ds := range e.Sim.Datastores() {
		if !slices.Contains(ds.Policies, "Gold") {
			continue
		}
		goldDS = append(goldDS, fmt.Sprintf("%s (%d GiB free, on %d of %d hosts)", ds.Name, ds.FreeBytes>>30, len(ds.Hosts), hosts))
		if len(ds.Hosts) == hosts && ds.FreeBytes > best.FreeBytes {
			best = ds
		}
	}
	t.detail("vCenter says the Gold policy is satisfied by: %s", strings.Join(goldDS, ", "))
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	created, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:               "pvc-" + strings.ReplaceAll(e.Node.UUID[:8], "-", "") + "-persistent-vmdk",
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 5 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{capability},
		Parameters: map[string]string{
			"storagepolicyname":                "Gold",
			"csi.storage.k8s.io/pvc/name":      "persistent-vmdk",
			"csi.storage.k8s.io/pvc/namespace": "default",
			"csi.storage.k8s.io/pv/name":       "pv-persistent-vmdk",
		},
	})
	if err != nil {
		return fmt.Errorf("CreateVolume: %w", err)
	}
	vol := created.GetVolume()
	dsName := e.datastoreName(vol.GetVolumeContext()["datastoreurl"])
	t.detail("CNS volume %s, %d GiB, on datastore %s (%s)", vol.GetVolumeId(), vol.GetCapacityBytes()>>30, dsName, vol.GetVolumeContext()["datastoreurl"])
	if dsName != best.Name {
		return fmt.Errorf("the volume went to %s; placement should have chosen %s", dsName, best.Name)
	}
	t.detail("why there: of the Gold datastores mounted on every host, %s has the most free space", dsName)
	dataFile, ok := e.Sim.VolumeFile(vol.GetVolumeId())
	if !ok {
		return errors.New("the embedded vCenter has no data file for the volume")
	}
	t.detail("its VMDK's data lives in %s", dataFile)
	defer func() {
		if err != nil { // leave nothing behind on failure either
			cleanup := context.WithoutCancel(ctx)
			_, _ = node.NodeUnpublishVolume(cleanup, &csi.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: e.target()})
			_, _ = node.NodeUnstageVolume(cleanup, &csi.NodeUnstageVolumeRequest{VolumeId: vol.GetVolumeId(), StagingTargetPath: e.staging()})
			_, _ = ctrl.ControllerUnpublishVolume(cleanup, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.GetVolumeId()})
			_, _ = ctrl.DeleteVolume(cleanup, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()})
		}
	}()

	var fsUUID string // the filesystem made at the first stage
	mountAndCheck := func(first bool) error {
		pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
			VolumeId: vol.GetVolumeId(), NodeId: e.Node.UUID, VolumeCapability: capability})
		if err != nil {
			return fmt.Errorf("ControllerPublishVolume: %w", err)
		}
		diskUUID := pub.GetPublishContext()["diskUUID"]
		t.say("ControllerPublishVolume attaches the disk to the VM %s, where the pod runs.", e.Node.Name)
		link := filepath.Join(e.Node.ByIDDir, "wwn-0x"+diskUUID)
		dev, _ := filepath.EvalSymlinks(link)
		t.detail("disk UUID %s; the node sees it as %s -> %s", diskUUID, link, dev)

		before := blkid(dev)
		if first && !strings.HasPrefix(before, "(blkid") {
			return fmt.Errorf("a fresh disk should be blank; blkid finds %s", before)
		}
		t.say("NodeStageVolume: format if and only if blank, then mount at the staging path.")
		if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
			VolumeId: vol.GetVolumeId(), PublishContext: pub.GetPublishContext(),
			StagingTargetPath: e.staging(), VolumeCapability: capability}); err != nil {
			return fmt.Errorf("NodeStageVolume: %w", err)
		}
		fs := blkid(dev)
		switch {
		case first:
			fsUUID = fs
			t.detail("the disk was blank (blkid found nothing), so it was formatted: %s now holds %s", dev, fs)
		case fs != fsUUID:
			return fmt.Errorf("the disk was formatted again: it held %s, now %s", fsUUID, fs)
		default:
			t.detail("%s already holds %s (the same filesystem): not formatted again", dev, fs)
		}
		t.detail("mounted: %s", findmnt(e.staging()))

		t.say("NodePublishVolume: bind-mount it into the pod.")
		if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: vol.GetVolumeId(), PublishContext: pub.GetPublishContext(), StagingTargetPath: e.staging(),
			TargetPath: e.target(), VolumeCapability: capability}); err != nil {
			return fmt.Errorf("NodePublishVolume: %w", err)
		}
		t.detail("the pod's volume: %s", findmnt(e.target()))
		file := filepath.Join(e.target(), "hello.txt")
		if first {
			if err := os.WriteFile(file, []byte(Payload), 0o644); err != nil {
				return err
			}
			t.detail("the pod wrote %d bytes to %s", len(Payload), file)
		} else {
			got, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("the data is gone: %w", err)
			}
			if string(got) != Payload {
				return fmt.Errorf("the data changed: %q", got)
			}
			t.detail("the new pod read back what the first one wrote: %q", strings.TrimSpace(string(got)))
		}
		return nil
	}
	unmount := func() error {
		t.say("The pod is deleted: NodeUnpublishVolume, NodeUnstageVolume, ControllerUnpublishVolume.")
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), TargetPath: e.target()}); err != nil {
			return fmt.Errorf("NodeUnpublishVolume: %w", err)
		}
		if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol.GetVolumeId(), StagingTargetPath: e.staging()}); err != nil {
			return fmt.Errorf("NodeUnstageVolume: %w", err)
		}
		if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol.GetVolumeId(), NodeId: e.Node.UUID}); err != nil {
			return fmt.Errorf("ControllerUnpublishVolume: %w", err)
		}
		links, _ := filepath.Glob(filepath.Join(e.Node.ByIDDir, "wwn-0x*"))
		if len(links) != 0 {
			return fmt.Errorf("detached, yet the node still sees %v", links)
		}
		t.detail("unmounted, detached: %s sees no disk", e.Node.Name)
		return nil
	}

	if err := mountAndCheck(true); err != nil {
		return err
	}
	if err := unmount(); err != nil {
		return err
	}
	t.say("The pod is rescheduled: the same volume is attached and mounted again.")
	if err := mountAndCheck(false); err != nil {
		return err
	}
	if err := unmount(); err != nil {
		return err
	}

	t.say("The PVC is deleted: DeleteVolume.")
	if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolumeId()}); err != nil {
		return fmt.Errorf("DeleteVolume: %w", err)
	}
	if _, err := os.Stat(dataFile); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the volume's data file %s is still there (%v)", dataFile, err)
	}
	t.detail("the CNS volume and its data file %s are gone", filepath.Base(dataFile))
	return nil
}

func (e Env) staging() string { return filepath.Join(e.WorkDir, "staging") }
func (e Env) target() string  { return filepath.Join(e.WorkDir, "pod", "volume") }

func (e Env) datastoreName(url string) string {
	for _, ds := range e.Sim.Datastores() {
		if ds.URL == url {
			return ds.Name
		}
	}
	return "?"
}

func blkid(dev string) string {
	out, err := exec.Command("blkid", "-o", "export", dev).Output()
	if err != nil {
		return "(blkid: " + err.Error() + ")"
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "TYPE=") || strings.HasPrefix(l, "UUID=") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, " ")
}

func findmnt(path string) string {
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--mountpoint", path).Output()
	if err != nil {
		return path + " (not mounted)"
	}
	fields := strings.Fields(string(bytes.TrimSpace(out)))
	if len(fields) == 3 {
		opts := strings.Split(fields[2], ",")
		return fmt.Sprintf("%s on %s type %s (%s)", fields[0], path, fields[1], strings.Join(opts[:min(len(opts), 3)], ","))
	}
	return strings.TrimSpace(string(out))
}

// WaitForSocket waits until the unix socket of endpoint exists.
func WaitForSocket(ctx context.Context, endpoint string) error {
	path := strings.TrimPrefix(endpoint, "unix://")
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no socket at %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func splitLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func containsPath(line, dir string) bool { return dir != "" && strings.Contains(line, dir) }
