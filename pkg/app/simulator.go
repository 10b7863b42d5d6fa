//go:build simulator

package app

// The embedded vCenter for --simulator is compiled in only with the
// simulator build tag (make build, make run): the image (Dockerfile) is
// built without it, so a production binary holds no vCenter simulator
// (about 6 MB less) and pkg/sim stays out of it (nosimulator.go).

import (
	"context"
	"fmt"
	"log"
	"os"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// SimulatorBuilt says whether this binary can run the embedded vCenter.
const SimulatorBuilt = true

// CheckSimulatorLatency checks a --simulator-latency spec.
func CheckSimulatorLatency(spec string) error {
	_, err := sim.ParseLatency(spec)
	return err
}

// startSimulator starts the embedded vCenter and points the node side at its
// first node VM, unless the flags chose otherwise. ini is a
// csi-vsphere.conf that reaches it; stop stops it.
func startSimulator(ctx context.Context, c *Config) (ini string, stop func(), err error) {
	latency, err := sim.ParseLatency(c.SimulatorLatency)
	if err != nil {
		return "", nil, fmt.Errorf("--simulator-latency: %w", err)
	}
	root := os.Geteuid() == 0
	if !root && c.Mode != driver.ModeController {
		klog.InfoS("Not root: the embedded vCenter can't make loop devices, so only the controller runs")
		c.Mode = driver.ModeController
	}
	log.SetOutput(sim.StdlibLogWriter{}) // the simulator's HTTP server logs there
	s, err := sim.Start(ctx, sim.Options{Dir: c.SimulatorDir, NodeVMs: c.SimulatorNodeVMs, Hypervisor: root, Latency: latency})
	if err != nil {
		return "", nil, fmt.Errorf("embedded vCenter: %w", err)
	}
	vm := s.NodeVMs()[0]
	if c.NodeID == "" {
		c.NodeID = vm.UUID
	}
	if c.ByIDDir == "" || c.ByIDDir == node.DefaultByIDDir {
		c.ByIDDir = vm.ByIDDir
	}
	fmt.Println(s.Summary())
	fmt.Printf("The node plugin plays node VM %s (node ID %s); its disks appear in %s\n", vm.Name, c.NodeID, c.ByIDDir)
	stop = func() {
		if err := s.Close(); err != nil {
			klog.ErrorS(err, "Stopping the embedded vCenter")
		}
	}
	return s.ConfigINI(SimClusterID, false), stop, nil
}
