// Command vsphere-sim runs the embedded vCenter (pkg/sim) standalone, so a
// controller and several node plugins can share one, as in a cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

func main() {
	klog.InitFlags(nil)
	var (
		opts        sim.Options
		writeConfig string
		clusterID   string
		topology    bool
	)
	flag.StringVar(&opts.Listen, "listen", "127.0.0.1:8989", "address to serve the SDK on")
	flag.StringVar(&opts.Dir, "dir", "", "state directory (datastores, volume data files); empty: a temp dir removed on exit")
	flag.IntVar(&opts.NodeVMs, "node-vms", sim.DefaultNodeVMs, "number of node VMs (k8s-node-1..N)")
	flag.IntVar(&opts.ZoneBNodeVMs, "zone-b-node-vms", 0, "number of node VMs in zone B (k8s-node-b-1..N), on the zone-b cluster")
	flag.BoolVar(&topology, "topology", false, "--write-config names the zone tag categories ([Labels] topology-categories), turning on the driver's topology")
	flag.BoolVar(&opts.Hypervisor, "hypervisor", false, "turn attaches into loop devices with wwn-0x<uuid> links (needs root)")
	flag.StringVar(&opts.ByIDRoot, "by-id-root", "", "node VM X's by-id directory is <by-id-root>/X (default <dir>/by-id)")
	flag.StringVar(&opts.Username, "username", sim.DefaultUsername, "user name the simulator accepts")
	flag.StringVar(&opts.Password, "password", sim.DefaultPassword, "password the simulator accepts")
	flag.StringVar(&writeConfig, "write-config", "", "write a csi-vsphere.conf pointing at the simulator to this file")
	flag.StringVar(&clusterID, "cluster-id", "demo-cluster", "cluster-id for --write-config")
	flag.Parse()
	log.SetOutput(sim.StdlibLogWriter{})

	if err := run(opts, writeConfig, clusterID, topology); err != nil {
		klog.ErrorS(err, "vsphere-sim failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(opts sim.Options, writeConfig, clusterID string, topology bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s, err := sim.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := s.Close(); err != nil {
			klog.ErrorS(err, "close simulator")
		}
	}()
	if writeConfig != "" {
		if err := s.WriteConfig(writeConfig, clusterID, topology); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
		klog.InfoS("wrote config", "path", writeConfig, "clusterID", clusterID, "topology", topology)
	}
	fmt.Print(s.Summary())
	fmt.Printf("listening on %s (Ctrl-C to stop)\n", s.URL())
	<-ctx.Done()
	klog.InfoS("signal received, shutting down")
	return nil
}
