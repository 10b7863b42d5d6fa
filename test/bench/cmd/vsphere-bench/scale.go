package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// runScale measures the controller, as a process of its own, with many
// volumes and node VMs in the embedded vCenter (no latency: this is about
// the driver's own cost): its resident memory, its start-up to serving,
// a ListVolumes page of 500, the round trips of a CreateVolume (against the
// same with 10 volumes and 3 node VMs) and the vCenter calls of an idle
// controller.
func runScale(volumes, vms int, idle time.Duration, mdPath string) error {
	dir, err := os.MkdirTemp("", "vsphere-bench-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binary, err := buildDriver(dir)
	if err != nil {
		return err
	}
	small, err := scaleRun(binary, filepath.Join(dir, "small"), 10, 3, 0)
	if err != nil {
		return fmt.Errorf("10 volumes, 3 node VMs: %w", err)
	}
	big, err := scaleRun(binary, filepath.Join(dir, "big"), volumes, vms, idle)
	if err != nil {
		return fmt.Errorf("%d volumes, %d node VMs: %w", volumes, vms, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nScale: the controller as a process, %d CNS volumes and %d node VMs in the embedded vCenter (no latency)\n\n", volumes, vms)
	fmt.Fprintln(&b, "| measure | ours | goal | with 10 volumes, 3 node VMs |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	fmt.Fprintf(&b, "| controller resident memory (after start-up, the pages and the creates) | %.1f MiB | < 150 MiB | %.1f MiB |\n", big.rssMiB, small.rssMiB)
	fmt.Fprintf(&b, "| start-up to serving (process start to ListVolumes answered) | %.2f s | < 10 s | %.2f s |\n", big.startup.Seconds(), small.startup.Seconds())
	fmt.Fprintf(&b, "| ListVolumes, a page of 500: median (spread) of %d | %.0f ms (%s) | < 100 ms | — |\n", len(big.pages), ms(medianDur(big.pages)), spreadMs(big.pages))
	fmt.Fprintf(&b, "| SOAP round trips per CreateVolume (10, one after the other) | %.1f | unchanged | %.1f |\n", big.rtPerCreate, small.rtPerCreate)
	fmt.Fprintf(&b, "| vCenter calls of the idle controller in %v | %d | ≤ 2 | — |\n", idle, big.idleCalls)
	fmt.Print(b.String())
	appendMD(mdPath, b.String())
	return nil
}

type scaleResult struct {
	rssMiB      float64
	startup     time.Duration
	pages       []time.Duration
	rtPerCreate float64
	idleCalls   int64
}

func scaleRun(binary, dir string, volumes, vms int, idle time.Duration) (scaleResult, error) {
	var r scaleResult
	s, err := sim.Start(context.Background(), sim.Options{Dir: filepath.Join(dir, "vc"), NodeVMs: vms})
	if err != nil {
		return r, err
	}
	defer s.Close()
	// 100 MiB each: 10,000 of them fit on Gold's datastores.
	if _, err := s.SeedVolumes(volumes, "pvc-seeded", "bench", "Gold", 100); err != nil {
		return r, err
	}
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "bench", false); err != nil {
		return r, err
	}
	p, err := startController(binary, dir, conf)
	if err != nil {
		return r, err
	}
	defer p.stop()
	c := p.client
	r.startup = p.startup
	if volumes >= 500 {
		for i := range 20 {
			token := strconv.Itoa((i * 500) % max(1, volumes-500))
			t0 := time.Now()
			resp, err := c.ListVolumes(context.Background(), &csi.ListVolumesRequest{MaxEntries: 500, StartingToken: token})
			if err != nil {
				return r, err
			}
			if len(resp.GetEntries()) != 500 {
				return r, fmt.Errorf("a page of %d, want 500", len(resp.GetEntries()))
			}
			r.pages = append(r.pages, time.Since(t0))
		}
	}
	// One create first: it reads the cluster's volume names once
	// (vcenter/names.go), which the steady state below does not pay.
	if _, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "pvc-scale-first", VolumeCapabilities: []*csi.VolumeCapability{capability()},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, Parameters: map[string]string{"storagepolicyname": "Gold"},
	}); err != nil {
		return r, err
	}
	time.Sleep(5 * time.Second)
	before := s.Requests()
	for i := range 10 {
		_, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
			Name: fmt.Sprintf("pvc-scale-%d", i), VolumeCapabilities: []*csi.VolumeCapability{capability()},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, Parameters: map[string]string{"storagepolicyname": "Gold"},
		})
		if err != nil {
			return r, err
		}
		time.Sleep(300 * time.Millisecond) // the watch's answers for this create come in
	}
	r.rtPerCreate = float64(s.Requests()-before) / 10
	r.rssMiB = rss(p.cmd.Process.Pid)
	if idle > 0 {
		time.Sleep(10 * time.Second) // the last creates' echoes
		before := s.Requests()
		time.Sleep(idle)
		r.idleCalls = s.Requests() - before
	}
	return r, nil
}

// rss is a process's resident memory in MiB (/proc/PID/status VmRSS).
func rss(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func spreadMs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "—"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%.0f–%.0f ms", ms(lo), ms(hi))
}

// buildDriver builds the driver's binary into dir.
func buildDriver(dir string) (string, error) {
	binary := filepath.Join(dir, "vsphere-csi")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/vsphere-cns/vsphere-csi/cmd/vsphere-csi").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return binary, nil
}

// controllerProcess is the driver's controller as a process of its own.
type controllerProcess struct {
	cmd     *exec.Cmd
	conn    *grpc.ClientConn
	client  csi.ControllerClient
	startup time.Duration // process start to ListVolumes answered
}

// startController starts the controller on the configuration conf, with
// extra flags, and waits until it serves.
func startController(binary, dir, conf string, extra ...string) (*controllerProcess, error) {
	sock := filepath.Join(dir, "csi.sock")
	args := append([]string{"--mode", "controller", "--endpoint", "unix://" + sock, "--config", conf, "-v", "0"}, extra...)
	p := &controllerProcess{cmd: exec.Command(binary, args...)}
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	var err error
	if p.conn, err = grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		p.stop()
		return nil, err
	}
	p.client = csi.NewControllerClient(p.conn)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.client.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 1})
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 5*time.Minute {
			p.stop()
			return nil, fmt.Errorf("not serving after 5 minutes: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.startup = time.Since(start)
	return p, nil
}

func (p *controllerProcess) stop() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}
