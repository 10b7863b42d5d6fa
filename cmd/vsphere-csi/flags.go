package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/registration"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

type options struct {
	endpoint              string
	mode                  string
	configPath            string
	nodeID                string
	dmiDir                string
	byIDDir               string
	maxVolumesPerNode     int64
	maxSnapshotsPerVolume int
	metricsAddress        string
	healthzAddress        string
	logFormat             string
	kubeconfig            string
	nodeUUIDs             []string

	kubeletRegistrationPath string
	pluginRegistrationDir   string
	showVersion             bool

	simulator        bool
	simulatorDir     string
	simulatorNodeVMs int
	simulatorLatency sim.Latency
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("vsphere-csi", flag.ContinueOnError)
	fs.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix:///path/csi.sock or tcp://host:port")
	fs.StringVar(&o.mode, "mode", string(driver.ModeAll), "services to serve: controller, node or all")
	fs.StringVar(&o.configPath, "config", "/etc/vsphere-csi/csi-vsphere.conf", "path of csi-vsphere.conf (controller)")
	fs.StringVar(&o.nodeID, "node-id", "", "node ID, the node VM's BIOS UUID (node; default: read from DMI)")
	fs.StringVar(&o.dmiDir, "dmi-dir", node.DefaultDMIDir, "where the node VM's DMI table is read, whose product_uuid is the node ID unless --node-id is set (node)")
	fs.StringVar(&o.byIDDir, "by-id-dir", "/dev/disk/by-id", "directory of the wwn-0x<disk UUID> device links (node)")
	fs.Int64Var(&o.maxVolumesPerNode, "max-volumes-per-node", driver.DefaultMaxVolumesPerNode,
		"volumes one node VM can attach: 59 = 4 PVSCSI controllers x 15 - the OS disk; up to 255 on vSphere 8 (node)")
	fs.IntVar(&o.maxSnapshotsPerVolume, "max-snapshots-per-volume", driver.DefaultMaxSnapshotsPerVolume,
		"snapshots one volume may have; more make every read and write go through a longer chain of delta disks (vSphere allows up to 32) (controller)")
	fs.StringVar(&o.metricsAddress, "metrics-address", "", "address to serve Prometheus metrics on, e.g. :9809 (empty: off)")
	fs.StringVar(&o.healthzAddress, "healthz-address", "", "address to serve /healthz on, backed by Probe, e.g. :9808 (empty: off; replaces the livenessprobe sidecar)")
	fs.StringVar(&o.kubeletRegistrationPath, "kubelet-registration-path", "",
		"the CSI socket's path as kubelet sees it; set, the node plugin registers itself with kubelet (replaces node-driver-registrar) (node)")
	fs.StringVar(&o.pluginRegistrationDir, "plugin-registration-dir", registration.DefaultDir,
		"kubelet's plugin registration directory, where <driver>-reg.sock is served (node, with --kubelet-registration-path)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "",
		"kubeconfig of the Kubernetes API the controller reads the cluster's nodes from (CSINode objects); empty: the pod's own service account when it runs in a pod, else none (controller)")
	fs.Func("node-uuids", "the BIOS UUIDs of this cluster's node VMs, comma-separated, for a controller without a Kubernetes API; "+
		"without either, every VM of the datacenters counts as a node, right only for a vCenter that holds nothing else (controller)", func(s string) error {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				o.nodeUUIDs = append(o.nodeUUIDs, u)
			}
		}
		return nil
	})
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.simulator, "simulator", false, "start the embedded vCenter in-process and use it (development, demos, tests)")
	fs.StringVar(&o.simulatorDir, "simulator-dir", "", "with --simulator: where the embedded vCenter keeps its datastores (default: a temporary directory)")
	fs.IntVar(&o.simulatorNodeVMs, "simulator-node-vms", 3, "with --simulator: number of node VMs")
	var latency string
	fs.StringVar(&latency, "simulator-latency", "", `with --simulator: how long the embedded vCenter's calls and tasks take: "realistic" (a real vCenter's timings), METHOD=DURATION[,...], jitter=N%`)
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var err error
	if o.simulatorLatency, err = sim.ParseLatency(latency); err != nil {
		return o, fmt.Errorf("--simulator-latency: %w", err)
	}
	switch driver.Mode(o.mode) {
	case driver.ModeController, driver.ModeNode, driver.ModeAll:
	default:
		return o, fmt.Errorf("--mode %q: want controller, node or all", o.mode)
	}
	if o.kubeletRegistrationPath != "" {
		if driver.Mode(o.mode) == driver.ModeController {
			return o, fmt.Errorf("--kubelet-registration-path: only the node plugin registers with kubelet (--mode node or all)")
		}
		if !filepath.IsAbs(o.kubeletRegistrationPath) {
			return o, fmt.Errorf("--kubelet-registration-path %q: want an absolute path", o.kubeletRegistrationPath)
		}
	}
	if o.maxSnapshotsPerVolume < 1 || o.maxSnapshotsPerVolume > driver.MaxSnapshotsLimit {
		return o, fmt.Errorf("--max-snapshots-per-volume %d: want 1 to %d (vSphere's limit per disk)", o.maxSnapshotsPerVolume, driver.MaxSnapshotsLimit)
	}
	if o.maxVolumesPerNode < 1 || o.maxVolumesPerNode > 255 {
		return o, fmt.Errorf("--max-volumes-per-node %d: want 1 to 255", o.maxVolumesPerNode)
	}
	return o, setLogFormat(o.logFormat, os.Stderr)
}

// setLogFormat routes klog through a JSON handler when asked; klog's own
// text format is the default.
func setLogFormat(format string, w io.Writer) error {
	switch format {
	case "text":
		return nil
	case "json":
		klog.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.Level(-127)})))
		return nil
	}
	return fmt.Errorf("--log-format %q: want text or json", format)
}
