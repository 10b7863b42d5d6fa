package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/registration"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
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
	metadataSync          bool
	fullSyncInterval      time.Duration
	leaseNamespace        string
	leaseDuration         time.Duration
	renewDeadline         time.Duration
	retryPeriod           time.Duration

	kubeletRegistrationPath string
	pluginRegistrationDir   string
	showVersion             bool

	simulator        bool
	simulatorDir     string
	simulatorNodeVMs int
	simulatorLatency string
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
	fs.IntVar(&o.maxSnapshotsPerVolume, "max-snapshots-per-volume", 0,
		fmt.Sprintf("snapshots one volume may have; more make every read and write go through a longer chain of delta disks (vSphere allows up to 32); "+
			"0: csi-vsphere.conf's [Snapshot] global-max-snapshots-per-block-volume, else %d (controller)", driver.DefaultMaxSnapshotsPerVolume))
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
	fs.BoolVar(&o.metadataSync, "metadata-sync", true,
		"keep each volume's PV, claim and pods current in CNS (what the vSphere Client's Container Volumes view shows) and report orphans; needs the Kubernetes API (controller)")
	fs.DurationVar(&o.fullSyncInterval, "full-sync-interval", syncer.DefaultFullSyncInterval,
		"how often the metadata syncer compares every volume's CNS metadata with Kubernetes, puts drift right and looks for orphans (also once at start) (controller)")
	fs.StringVar(&o.leaseNamespace, "leader-election-namespace", "",
		"namespace of the metadata syncer's Lease (vsphere-csi-syncer), which elects the one controller replica that syncs; empty: the pod's own, else default (controller)")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "the syncer's Lease: how long a replica holds it without renewing (controller)")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "the syncer's Lease: how long the holder tries to renew before it gives up syncing (controller)")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "the syncer's Lease: how often replicas try to take or renew it (controller)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.simulator, "simulator", false, "start the embedded vCenter in-process and use it (development, demos, tests; a binary built with -tags simulator, as make build does)")
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
	if o.simulator && !app.SimulatorBuilt {
		return o, fmt.Errorf("--simulator: %w", app.ErrNoSimulator)
	}
	if err := app.CheckSimulatorLatency(latency); err != nil {
		return o, fmt.Errorf("--simulator-latency: %w", err)
	}
	o.simulatorLatency = latency
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
	if o.maxSnapshotsPerVolume < 0 || o.maxSnapshotsPerVolume > driver.MaxSnapshotsLimit {
		return o, fmt.Errorf("--max-snapshots-per-volume %d: want 1 to %d (vSphere's limit per disk), or 0 for csi-vsphere.conf's", o.maxSnapshotsPerVolume, driver.MaxSnapshotsLimit)
	}
	if !(o.leaseDuration > o.renewDeadline && o.renewDeadline > o.retryPeriod && o.retryPeriod > 0) {
		return o, fmt.Errorf("--leader-election-lease-duration %s, --leader-election-renew-deadline %s, --leader-election-retry-period %s: want lease duration > renew deadline > retry period > 0",
			o.leaseDuration, o.renewDeadline, o.retryPeriod)
	}
	if o.fullSyncInterval < time.Minute {
		return o, fmt.Errorf("--full-sync-interval %s: want at least 1m (a full sync reads every volume of the cluster)", o.fullSyncInterval)
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
