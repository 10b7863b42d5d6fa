package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// runShared measures what a shared vCenter costs the controller: the
// controller as a process, its 3 nodes given by --node-uuids, on a plain
// embedded vCenter and on one with `vms` unrelated VMs, another cluster's
// volumes and `perMinute` background tasks a minute (no latency: this is
// about the driver's own cost). Goal: unchanged.
func runShared(vms int, perMinute float64, idle time.Duration, mdPath string) error {
	dir, err := os.MkdirTemp("", "vsphere-bench-shared-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binary, err := buildDriver(dir)
	if err != nil {
		return err
	}
	plain, err := neighboursRun(binary, filepath.Join(dir, "plain"), sim.Neighbours{}, idle)
	if err != nil {
		return fmt.Errorf("plain vCenter: %w", err)
	}
	shared, err := neighboursRun(binary, filepath.Join(dir, "shared"),
		sim.Neighbours{VMs: vms, TasksPerMinute: perMinute, OtherClusterVolumes: 50}, idle)
	if err != nil {
		return fmt.Errorf("shared vCenter: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nA shared vCenter: the controller as a process (3 nodes, --node-uuids), on a plain embedded vCenter and on one with %d unrelated VMs, "+
		"another cluster's 50 volumes and %.0f background tasks a minute (no latency)\n\n", vms, perMinute)
	fmt.Fprintln(&b, "| measure | plain | shared | goal |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	fmt.Fprintf(&b, "| start-up to serving | %.2f s | %.2f s | unchanged |\n", plain.startup.Seconds(), shared.startup.Seconds())
	fmt.Fprintf(&b, "| controller resident memory | %.1f MiB | %.1f MiB | unchanged |\n", plain.rssMiB, shared.rssMiB)
	fmt.Fprintf(&b, "| property-collector object updates received at start-up | %d | %d | unchanged |\n", plain.startUpdates, shared.startUpdates)
	fmt.Fprintf(&b, "| SOAP round trips per CreateVolume (10, one after the other) | %.1f | %.1f | unchanged |\n", plain.rtCreate, shared.rtCreate)
	fmt.Fprintf(&b, "| SOAP round trips per publish + unpublish | %.1f | %.1f | unchanged |\n", plain.rtPublish, shared.rtPublish)
	fmt.Fprintf(&b, "| object updates received while idle for %v | %d | %d | the neighbours' tasks only |\n", idle, plain.idleUpdates, shared.idleUpdates)
	fmt.Fprintf(&b, "| vCenter calls of the idle controller in %v | %d | %d | unchanged |\n", idle, plain.idleCalls, shared.idleCalls)
	fmt.Print(b.String())
	appendMD(mdPath, b.String())
	return nil
}

type neighboursResult struct {
	startup                   time.Duration
	rssMiB                    float64
	startUpdates, idleUpdates int64
	rtCreate, rtPublish       float64
	idleCalls                 int64
}

func neighboursRun(binary, dir string, n sim.Neighbours, idle time.Duration) (neighboursResult, error) {
	var r neighboursResult
	s, err := sim.Start(context.Background(), sim.Options{Dir: filepath.Join(dir, "vc"), NodeVMs: 3, Neighbours: n})
	if err != nil {
		return r, err
	}
	defer s.Close()
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "bench", false); err != nil {
		return r, err
	}
	var uuids []string
	for _, vm := range s.NodeVMs() {
		uuids = append(uuids, vm.UUID)
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	p, err := startController(binary, dir, conf, "--node-uuids", strings.Join(uuids, ","), "--metrics-address", metricsAddr)
	if err != nil {
		return r, err
	}
	defer p.stop()
	c := p.client
	r.startup = p.startup
	updates := func() int64 { return metric(metricsAddr, "vsphere_csi_vcenter_watch_object_updates_total") }
	r.startUpdates = updates()
	before := s.Requests()
	var ids []string
	for i := range 10 {
		resp, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
			Name: fmt.Sprintf("pvc-nb-%d", i), VolumeCapabilities: []*csi.VolumeCapability{capability()},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, Parameters: map[string]string{"storagepolicyname": "Gold"},
		})
		if err != nil {
			return r, err
		}
		ids = append(ids, resp.GetVolume().GetVolumeId())
		time.Sleep(300 * time.Millisecond) // the watch's answers for this create come in
	}
	r.rtCreate = float64(s.Requests()-before) / 10
	before = s.Requests()
	for _, id := range ids {
		if _, err := c.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: uuids[0], VolumeCapability: capability()}); err != nil {
			return r, err
		}
		if _, err := c.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: uuids[0]}); err != nil {
			return r, err
		}
		time.Sleep(300 * time.Millisecond)
	}
	r.rtPublish = float64(s.Requests()-before) / float64(len(ids))
	r.rssMiB = rss(p.cmd.Process.Pid)
	time.Sleep(5 * time.Second) // the last echoes
	before, u := s.Requests(), updates()
	time.Sleep(idle)
	r.idleCalls, r.idleUpdates = s.Requests()-before, updates()-u
	return r, nil
}

// metric reads one counter from a Prometheus endpoint (-1 when absent).
func metric(addr, name string) int64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return int64(v)
		}
	}
	return -1
}

// freeAddr is a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
