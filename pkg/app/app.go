// Package app wires the driver together: configuration, the vCenter client
// (or the embedded vCenter), the node's mounter, metrics and the CSI server.
// cmd/vsphere-csi is flags and this; the tests start the same wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/healthz"
	"github.com/vsphere-cns/vsphere-csi/pkg/kube"
	"github.com/vsphere-cns/vsphere-csi/pkg/metrics"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/registration"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Config is what the process was asked to do (from flags).
type Config struct {
	Mode              driver.Mode
	Version           string
	Endpoint          string
	ConfigPath        string
	NodeID            string
	DMIDir            string // where NodeID is read when not set ("": node.DefaultDMIDir)
	ByIDDir           string
	MaxVolumesPerNode int64
	MetricsAddress    string
	// MaxSnapshotsPerVolume caps CreateSnapshot per volume (0: the default).
	MaxSnapshotsPerVolume int
	// HealthzAddress serves /healthz backed by Probe ("" = off).
	HealthzAddress string
	// Kubeconfig and NodeUUIDs say how the controller learns the
	// cluster's nodes (nodeSource).
	Kubeconfig string
	NodeUUIDs  []string
	// MetadataSync runs the metadata syncer in the controller (syncer.go)
	// when there is a Kubernetes API; FullSyncInterval is its full sync's
	// period (0: the default), LeaseNamespace where its Lease lives ("":
	// the pod's namespace).
	MetadataSync     bool
	FullSyncInterval time.Duration
	LeaseNamespace   string
	// The Lease's timings (0: syncer's defaults).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// KubeletRegistrationPath, when set, makes the node plugin register
	// itself with kubelet: the CSI socket's path as kubelet sees it, served
	// on PluginRegistrationDir/<driver>-reg.sock.
	KubeletRegistrationPath string
	PluginRegistrationDir   string

	// Simulator starts the embedded vCenter in-process; the driver talks to
	// it over SOAP exactly as to a real vCenter. Only in a binary built
	// with the simulator tag (simulator.go); SimulatorLatency is a
	// --simulator-latency spec (sim.ParseLatency).
	Simulator        bool
	SimulatorDir     string
	SimulatorNodeVMs int
	SimulatorLatency string
}

// Run serves CSI until ctx ends, then cleans up (logout, loop devices).
func Run(ctx context.Context, c Config) error {
	m := metrics.New()
	if c.MetricsAddress != "" {
		go func() {
			if err := m.Serve(ctx, c.MetricsAddress); err != nil {
				klog.ErrorS(err, "Metrics server stopped", "address", c.MetricsAddress)
			}
		}()
	}

	var vcCfg *config.Config
	if c.Simulator {
		ini, stop, err := startSimulator(ctx, &c)
		if err != nil {
			return err
		}
		defer stop()
		if vcCfg, err = config.Parse(strings.NewReader(ini), "embedded vCenter"); err != nil {
			return err
		}
	} else if c.Mode != driver.ModeNode || nodeConfigPresent(c.ConfigPath) { // a node reads it for topology (topology.go)
		var err error
		if vcCfg, err = config.Load(c.ConfigPath); err != nil {
			return err
		}
	}

	vcHost := ""
	if vcCfg != nil {
		vcHost = vcCfg.VirtualCenter.Host
	}
	m.Started(c.Version, vcHost)
	d, vc, closeAll, err := build(ctx, c, vcCfg, m)
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stopForConfig := context.WithCancelCause(ctx)
	defer stopForConfig(nil)
	if vc != nil && !c.Simulator {
		// A rotated Secret is taken on without a restart (reload.go).
		go watchConfig(ctx, c.ConfigPath, configPoll, vcCfg, vc, func() { stopForConfig(ErrConfigChanged) })
	}
	l, err := driver.Listen(c.Endpoint)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.HealthzAddress != "" {
		go func() {
			if err := healthz.Serve(ctx, c.HealthzAddress, probe(d), readiness(d.Ready)); err != nil {
				klog.ErrorS(err, "Health check server stopped", "address", c.HealthzAddress)
			}
		}()
	}
	if c.KubeletRegistrationPath != "" && c.Mode != driver.ModeController {
		dir := c.PluginRegistrationDir
		if dir == "" {
			dir = registration.DefaultDir
		}
		reg := &registration.Server{DriverName: driver.Name, Endpoint: c.KubeletRegistrationPath}
		regDone := make(chan struct{})
		go func() {
			defer close(regDone)
			if err := reg.Serve(ctx, dir); err != nil {
				klog.ErrorS(err, "Kubelet plugin registration stopped", "dir", dir)
			}
		}()
		// The registration socket goes before the CSI server stops.
		defer func() { cancel(); <-regDone }()
	}
	if c.Simulator {
		fmt.Printf("\nCSI (%s) on %s. Ctrl-C stops the driver and the embedded vCenter and removes every loop device and mount they made.\n\n",
			c.Mode, c.Endpoint)
	}
	if err := d.Serve(ctx, l, m); err != nil {
		return err
	}
	if errors.Is(context.Cause(ctx), ErrConfigChanged) {
		return ErrConfigChanged
	}
	return nil
}

// probe is the driver's CSI Probe as a health check.
func probe(d *driver.Driver) healthz.ProbeFunc {
	// Liveness: the driver answers its Probe (never vCenter's health).
	return func(ctx context.Context) error {
		resp, err := d.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			return err
		}
		if r := resp.GetReady(); r != nil && !r.GetValue() {
			return errors.New("driver not ready (see its log)")
		}
		return nil
	}
}

// readiness is the driver's Ready as /readyz answers it: the kind of
// failure only; vCenter's host and the driver's user, which its errors
// name, stay in the log.
func readiness(ready healthz.ProbeFunc) healthz.ProbeFunc {
	return func(ctx context.Context) error {
		if err := ready(ctx); err != nil {
			return healthz.WithReason(err, "vCenter session not usable: "+vcenter.Reason(err))
		}
		return nil
	}
}

// ErrNoSimulator: --simulator in a binary built without the embedded
// vCenter (nosimulator.go).
var ErrNoSimulator = errors.New("this binary is built without the embedded vCenter: build it with -tags simulator (make build does)")

// SimClusterID is the cluster ID the driver uses with the embedded vCenter.
const SimClusterID = "vsphere-csi-dev"

// New builds the driver for c: a vCenter client from vcCfg when the mode
// serves the controller, a mounter when it serves the node. closeAll logs
// out of vCenter.
func New(ctx context.Context, c Config, vcCfg *config.Config, obs vcenter.Observer) (*driver.Driver, func(), error) {
	d, _, closeAll, err := build(ctx, c, vcCfg, obs)
	return d, closeAll, err
}

// build is New that also gives the vCenter client (nil without a
// controller), for the config watch.
func build(ctx context.Context, c Config, vcCfg *config.Config, obs vcenter.Observer) (_ *driver.Driver, _ vcenter.Client, closeAll func(), err error) {
	closeAll = func() {}
	var vc vcenter.Client
	if c.Mode != driver.ModeNode {
		if vcCfg == nil {
			return nil, nil, nil, errors.New("the controller needs a vCenter configuration")
		}
		opts := VCenterOptions(vcCfg)
		opts.UserAgent = "vsphere-csi/" + c.Version
		opts.Observer = obs
		kc, err := kubeClient(c)
		if err != nil {
			return nil, nil, nil, err
		}
		if opts.Nodes, err = nodeSource(ctx, c, kc); err != nil {
			return nil, nil, nil, err
		}
		if vc, err = vcenter.New(ctx, opts); err != nil {
			return nil, nil, nil, err
		}
		stopSyncer := startSyncer(ctx, c, kc, vc, obs)
		closeAll = func() {
			stopSyncer()
			if err := vc.Close(context.WithoutCancel(ctx)); err != nil {
				klog.ErrorS(err, "Logging out of vCenter")
			}
		}
	}
	var mounter node.Mounter
	var nodeTopo map[string]string
	if c.Mode != driver.ModeController {
		if c.NodeID == "" {
			if c.NodeID, err = node.NodeIDFromDMI(c.DMIDir); err != nil {
				closeAll()
				return nil, nil, nil, fmt.Errorf("node ID: %w (set --node-id, or --dmi-dir)", err)
			}
		}
		mounter = NodeMounter(c.Mode)
		if nodeTopo, err = nodeTopology(ctx, vcCfg, vc, c.NodeID); err != nil {
			closeAll()
			return nil, nil, nil, err
		}
	}
	d, err := driver.NewDriver(driver.Options{
		Mode: c.Mode, Version: c.Version, NodeID: c.NodeID, ByIDDir: c.ByIDDir,
		MaxVolumesPerNode:     c.MaxVolumesPerNode,
		MaxSnapshotsPerVolume: snapshotLimit(c.MaxSnapshotsPerVolume, vcCfg), MaxSnapshotsVSAN: snapshotLimits(vcCfg).VSAN,
		MaxSnapshotsVVOL: snapshotLimits(vcCfg).VVOL, InTreeDatastoreURL: inTreeDatastoreURL(vcCfg),
		TopologyCategories: topologyCategories(vcCfg), NodeTopology: nodeTopo,
		NetPermissions: netPermissions(vcCfg),
	}, vc, mounter)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return d, vc, closeAll, nil
}

// NodeMounter is the mounter of a process in mode: the real one when the
// mode serves the node, none otherwise.
func NodeMounter(mode driver.Mode) node.Mounter {
	if mode == driver.ModeController {
		return nil
	}
	return node.NewMounter()
}

// nodeSource is how the controller knows which VMs are the cluster's nodes
// (vcenter/nodes.go): the VMs of --node-uuids when given; else the
// CSINode objects of this driver in the Kubernetes API (--kubeconfig, or
// the pod's own service account); else none, and every VM of the
// datacenters counts as a node, which is right only for a vCenter that
// holds nothing but this cluster (the embedded one of make run).
func nodeSource(ctx context.Context, c Config, client kubernetes.Interface) (vcenter.NodeSource, error) {
	if len(c.NodeUUIDs) > 0 {
		klog.InfoS("The cluster's nodes are the VMs of --node-uuids", "nodes", len(c.NodeUUIDs))
		return vcenter.StaticNodes(c.NodeUUIDs...), nil
	}
	if client == nil {
		klog.InfoS("No Kubernetes API and no --node-uuids: every VM of the datacenters counts as a node of this cluster " +
			"(right only for a vCenter that holds nothing else, such as the embedded one)")
		return nil, nil
	}
	nodes, err := kube.Nodes(ctx, client, driver.Name)
	if err != nil {
		return nil, err
	}
	return nodes, nil
}
