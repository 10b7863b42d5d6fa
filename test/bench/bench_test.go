// Package bench measures the driver on the embedded vCenter: vCenter round
// trips per CreateVolume (deterministic), NodeStage of a fresh 5 GiB volume
// (format + mount, median), and the node plugin's resident memory when idle.
// Run with `make bench`; never timed assertions in tests.
package bench

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/rtcount"
	"github.com/vsphere-cns/vsphere-csi/test/walkthrough"
)

type env struct {
	sim   *sim.Sim
	d     *driver.Driver
	calls *rtcount.Counter
}

func newEnv(b *testing.B, mode driver.Mode, nodeVMs int) *env {
	b.Helper()
	klog.SetOutput(ioDiscard{})
	klog.LogToStderr(false)
	log.SetOutput(ioDiscard{}) // the simulator's HTTP server
	ctx := context.Background()
	hv := mode != driver.ModeController
	if hv && os.Geteuid() != 0 {
		b.Skip("needs root: loop devices, mkfs and mount")
	}
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(b.TempDir(), "vc"), NodeVMs: nodeVMs, Hypervisor: hv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	e := &env{sim: s, calls: &rtcount.Counter{}}
	vc, err := vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
		Thumbprint: s.Thumbprint(), ClusterID: "bench",
		WrapTransport: e.calls.Wrap,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = vc.Close(context.Background()) })
	vm := s.NodeVMs()[0]
	var mounter = app.NodeMounter(mode)
	e.d, err = driver.NewDriver(driver.Options{Mode: mode, Version: "bench", NodeID: vm.UUID, ByIDDir: vm.ByIDDir}, vc, mounter)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

func mountCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: size},
		VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Parameters: map[string]string{"storagepolicyname": "Gold"}}
}

// BenchmarkCreateVolume: one CSI CreateVolume with a storage policy, caches
// warm. roundtrips/op is every HTTP request to vCenter. The upstream driver
// makes 13 + 3 x (node VMs) for the same call.
func BenchmarkCreateVolume(b *testing.B) {
	for _, nodes := range []int{3, 30} {
		b.Run(fmt.Sprintf("nodeVMs=%d", nodes), func(b *testing.B) {
			e := newEnv(b, driver.ModeController, nodes)
			ctx := context.Background()
			if _, err := e.d.CreateVolume(ctx, createReq("warm-up", 1<<30)); err != nil {
				b.Fatal(err)
			}
			before := e.calls.Count()
			b.ResetTimer()
			for i := range b.N {
				if _, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("bench-%d", i), 1<<30)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(e.calls.Count()-before)/float64(b.N), "roundtrips/op")
			b.ReportMetric(float64(13+3*nodes), "upstream-roundtrips/op")
		})
	}
}

// BenchmarkPublishBurst: 8 volumes published to one node VM, all at once
// (a StatefulSet's pods landing on one node) or one after the other.
// roundtrips/volume is every HTTP request to vCenter per ControllerPublish:
// attaches that arrive together share CnsAttachVolume calls.
func BenchmarkPublishBurst(b *testing.B) {
	const n = 8
	for _, burst := range []bool{true, false} {
		b.Run(fmt.Sprintf("concurrent=%v", burst), func(b *testing.B) {
			e := newEnv(b, driver.ModeController, 3)
			ctx := context.Background()
			node := e.sim.NodeVMs()[0].UUID
			var calls int64
			for i := range b.N {
				b.StopTimer()
				ids := make([]string, n)
				for j := range ids {
					v, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("burst-%d-%d", i, j), 64<<20))
					if err != nil {
						b.Fatal(err)
					}
					ids[j] = v.GetVolume().GetVolumeId()
				}
				publish := func(id string) {
					if _, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{
						VolumeId: id, NodeId: node, VolumeCapability: mountCap()}); err != nil {
						b.Error(err)
					}
				}
				before := e.calls.Count()
				b.StartTimer()
				if burst {
					var wg sync.WaitGroup
					for _, id := range ids {
						wg.Go(func() { publish(id) })
					}
					wg.Wait()
				} else {
					for _, id := range ids {
						publish(id)
					}
				}
				b.StopTimer()
				calls += e.calls.Count() - before
				for _, id := range ids {
					if _, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(calls)/float64(b.N*n), "roundtrips/volume")
		})
	}
}

// BenchmarkNodeStage: NodeStageVolume of a fresh 5 GiB volume (mkfs.ext4 +
// mount) on a real loop device. median-ms is the median over b.N stages.
func BenchmarkNodeStage(b *testing.B) {
	e := newEnv(b, driver.ModeAll, 3)
	ctx := context.Background()
	vm := e.sim.NodeVMs()[0]
	dir := b.TempDir()
	var took []time.Duration
	b.ResetTimer() // the embedded vCenter's start is not NodeStage
	for i := range b.N {
		b.StopTimer()
		vol, err := e.d.CreateVolume(ctx, createReq(fmt.Sprintf("stage-%d", i), 5<<30))
		if err != nil {
			b.Fatal(err)
		}
		id := vol.GetVolume().GetVolumeId()
		pub, err := e.d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: vm.UUID, VolumeCapability: mountCap()})
		if err != nil {
			b.Fatal(err)
		}
		staging := filepath.Join(dir, id)
		start := time.Now()
		b.StartTimer()
		_, err = e.d.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, PublishContext: pub.GetPublishContext(),
			StagingTargetPath: staging, VolumeCapability: mountCap()})
		b.StopTimer()
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			b.Fatal(err)
		}
		if _, err := e.d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: vm.UUID}); err != nil {
			b.Fatal(err)
		}
		if _, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
}

// BenchmarkNodeIdleRSS: the node plugin's resident memory, a process of its
// own, idle for 3 s after start.
func BenchmarkNodeIdleRSS(b *testing.B) {
	dir := b.TempDir()
	binary := filepath.Join(dir, "vsphere-csi")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary,
		"github.com/vsphere-cns/vsphere-csi/cmd/vsphere-csi").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	var rss []float64
	for range b.N {
		d, err := walkthrough.StartDriver(context.Background(), binary, "node", "", sim.NodeVM{
			UUID: "42000000-0000-0000-0000-000000000001", ByIDDir: dir}, dir, ioDiscard{})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		kib, err := vmRSS(d.Pid())
		_ = d.Stop()
		if err != nil {
			b.Fatal(err)
		}
		rss = append(rss, float64(kib)/1024)
	}
	slices.Sort(rss)
	b.ReportMetric(rss[len(rss)/2], "MiB-rss")
}

func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
