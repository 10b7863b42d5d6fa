// Command vsphere-sim runs the embedded vCenter (pkg/sim) standalone, so a
// controller and several node plugins can share one, as in a cluster. With
// --dir it keeps its state across restarts; with --control it serves the
// fault laboratory's HTTP endpoint.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

type flags struct {
	opts          sim.Options
	latency       string
	control       string
	writeConfig   string
	clusterID     string
	topology      bool
	releaseOnExit bool
}

func main() {
	klog.InitFlags(nil)
	var f flags
	flag.StringVar(&f.opts.Listen, "listen", "127.0.0.1:8989", "address to serve the SDK on")
	flag.StringVar(&f.opts.Dir, "dir", "", "state directory: datastores, volume data files and everything vCenter keeps across a restart (stop and start again on the same --dir); empty: a temp dir removed on exit")
	flag.IntVar(&f.opts.NodeVMs, "node-vms", 0, fmt.Sprintf("number of node VMs (k8s-node-1..N); default %d, or as kept in --dir", sim.DefaultNodeVMs))
	flag.IntVar(&f.opts.ZoneBNodeVMs, "zone-b-node-vms", 0, "number of node VMs in zone B (k8s-node-b-1..N), on the zone-b cluster")
	flag.BoolVar(&f.topology, "topology", false, "--write-config names the zone tag categories ([Labels] topology-categories), turning on the driver's topology")
	flag.BoolVar(&f.opts.Hypervisor, "hypervisor", false, "turn attaches into loop devices with wwn-0x<uuid> links (needs root)")
	flag.StringVar(&f.opts.ByIDRoot, "by-id-root", "", "node VM X's by-id directory is <by-id-root>/X (default <dir>/by-id)")
	flag.StringVar(&f.opts.Username, "username", sim.DefaultUsername, "user name the simulator accepts")
	flag.StringVar(&f.opts.Password, "password", sim.DefaultPassword, "password the simulator accepts")
	flag.StringVar(&f.latency, "latency", "", `how long calls and tasks take: METHOD=DURATION[,...] (SOAP method names), "realistic" (figures and sources in pkg/sim/lab_latency.go; later entries override), jitter=N%`)
	flag.IntVar(&f.opts.Neighbours.VMs, "neighbour-vms", 0, "make it a shared vCenter: this many VMs that are not this cluster's nodes (workloads, templates, another cluster's nodes) over every host, and a workload cluster whose hosts each have a local datastore")
	flag.Float64Var(&f.opts.Neighbours.TasksPerMinute, "neighbour-tasks-per-minute", 0, "background tasks that are not ours started a minute (DRS migrations, Storage vMotions, backup snapshots, scheduled power operations, another cluster's CNS calls)")
	flag.IntVar(&f.opts.Neighbours.OtherClusterVolumes, "neighbour-volumes", 0, "CNS volumes of another Kubernetes cluster under the same vCenter user at the first start on --dir (some with snapshots, some attached)")
	flag.StringVar(&f.opts.Neighbours.OtherClusterID, "neighbour-cluster-id", sim.DefaultOtherClusterID, "the other Kubernetes cluster's cluster-id")
	flag.StringVar(&f.opts.Neighbours.User, "neighbour-user", "", "the user of the neighbours' Storage vMotions (default: --username, the driver's own)")
	flag.Int64Var(&f.opts.Neighbours.Seed, "neighbour-seed", 1, "seed of the neighbours' names, placement, task kinds and durations")
	flag.StringVar(&f.opts.Release, "release", "", "the vCenter release it says it is and answers as ("+sim.ReleaseNames()+"; default "+sim.DefaultRelease+"): a CNS method the release lacks answers MethodNotFound, e.g. snapshots before 7.0.3")
	flag.StringVar(&f.opts.NFSAddress, "nfs-address", "", "serve the vSAN file shares (NFS, port 2049) on this IP address, e.g. a node address other network namespaces reach; empty: a loopback address of its own (127.x.y.z)")
	flag.StringVar(&f.control, "control", "", "serve the fault laboratory's control endpoint (plain HTTP) on this loopback address, e.g. 127.0.0.1:8990; GET / lists what it does")
	flag.BoolVar(&f.releaseOnExit, "release-on-exit", false, "on SIGINT/SIGTERM also take the node VMs' disks away (loop devices, links, mounts), as when the whole lab goes; the default with --dir keeps them, as a vCenter restart does")
	flag.StringVar(&f.writeConfig, "write-config", "", "write a csi-vsphere.conf pointing at the simulator to this file")
	flag.StringVar(&f.clusterID, "cluster-id", "demo-cluster", "cluster-id for --write-config")
	flag.Parse()
	log.SetOutput(sim.StdlibLogWriter{})

	if err := run(f); err != nil {
		klog.ErrorS(err, "vsphere-sim failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(f flags) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	if f.opts.Latency, err = sim.ParseLatency(f.latency); err != nil {
		return fmt.Errorf("--latency: %w", err)
	}
	var controlLn net.Listener
	if f.control != "" {
		if controlLn, err = loopbackListener(f.control); err != nil {
			return fmt.Errorf("--control: %w", err)
		}
	}
	keep := f.opts.Dir != "" && !f.releaseOnExit
	r, err := sim.NewRunner(ctx, f.opts)
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			r.Stop(sim.StopOptions{RunningTasks: sim.TasksMayHappen})
			klog.InfoS("vCenter stopped; its state and the node VMs' disks are kept for the next start on the same --dir", "dir", f.opts.Dir)
			return
		}
		if err := r.Close(); err != nil {
			klog.ErrorS(err, "close simulator")
		}
	}()
	s := r.Sim()
	if f.writeConfig != "" {
		if err := s.WriteConfig(f.writeConfig, f.clusterID, f.topology); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
		klog.InfoS("wrote config", "path", f.writeConfig, "clusterID", f.clusterID, "topology", f.topology)
	}
	if controlLn != nil {
		srv := &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(controlLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "control endpoint stopped")
			}
		}()
		defer func() { _ = srv.Close() }()
	}
	fmt.Print(s.Summary())
	if controlLn != nil {
		fmt.Printf("control endpoint on http://%s (GET / lists what it does)\n", controlLn.Addr())
	}
	fmt.Printf("listening on %s (Ctrl-C to stop)\n", s.URL())
	<-ctx.Done()
	klog.InfoS("signal received, shutting down")
	return nil
}

// loopbackListener listens on addr, which must be a loopback address: the
// control endpoint has no authentication.
func loopbackListener(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%s is not a loopback address: the control endpoint has no authentication", addr)
	}
	return net.Listen("tcp", addr)
}
