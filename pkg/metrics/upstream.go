package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// upstream holds the metrics that carry the upstream vSphere CSI driver's
// names, types, labels and label values, recorded when the same thing
// happens, so that dashboards and alerts made for that driver work here.
// docs/METRICS.md says, metric by metric, what each one counts here and
// where it differs.
type upstream struct {
	csiInfo    *prometheus.GaugeVec     // vsphere_csi_info{version}
	syncerInfo *prometheus.GaugeVec     // vsphere_syncer_info{version}
	csiOps     *prometheus.HistogramVec // vsphere_csi_volume_ops_histogram{voltype,optype,status,faulttype}
	cnsOps     *prometheus.HistogramVec // vsphere_cns_volume_ops_histogram{optype,status}
	health     *prometheus.GaugeVec     // vsphere_volume_health_gauge{volume_health_type}
	fullSync   *prometheus.HistogramVec // vsphere_full_sync_ops_histogram{status}
	requests   *prometheus.HistogramVec // vsphere_request_ops_seconds{request,client,status}
	pvMissing  *prometheus.GaugeVec     // vsphere_cns_volume_pv_missing{vc}
}

// upstreamBuckets are the upstream driver's buckets (seconds) for all its
// histograms: the same le values keep its queries' quantiles comparable.
func upstreamBuckets() []float64 { return []float64{2, 5, 10, 15, 20, 25, 30, 60, 120, 180} }

// Label values of the upstream metrics.
const (
	statusPass        = "pass"
	statusFail        = "fail"
	requestSuccess    = "success"
	requestFail       = "fail-unknown"
	accessibleVolumes = "accessible-volumes"
	inaccessibleVols  = "inaccessible-volumes"
)

func newUpstream() *upstream {
	return &upstream{
		csiInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vsphere_csi_info",
			Help: "The driver's version (value 1).",
		}, []string{"version"}),
		syncerInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vsphere_syncer_info",
			Help: "The metadata syncer's version (value 1) once it runs in this controller.",
		}, []string{"version"}),
		csiOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vsphere_csi_volume_ops_histogram",
			Help:    "CSI controller operations by volume type (block, file, unknown), operation (create-volume, attach-volume, …), status (pass, fail) and fault type (\"\" when it passed; vim.fault.<fault> when a vCenter fault made it fail, csi.fault.<gRPC code> otherwise).",
			Buckets: upstreamBuckets(),
		}, []string{"voltype", "optype", "status", "faulttype"}),
		cnsOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vsphere_cns_volume_ops_histogram",
			Help:    "CNS operations as a whole (the call and its task), by operation (create-volume, attach-volume, query-volume, …) and status (pass, fail).",
			Buckets: upstreamBuckets(),
		}, []string{"optype", "status"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vsphere_volume_health_gauge",
			Help: "Bound PersistentVolumes of this driver whose volume CNS reports accessible (accessible-volumes) or inaccessible or gone (inaccessible-volumes), at the last full sync.",
		}, []string{"volume_health_type"}),
		fullSync: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vsphere_full_sync_ops_histogram",
			Help:    "Full syncs of CNS metadata by status (pass, fail).",
			Buckets: upstreamBuckets(),
		}, []string{"status"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vsphere_request_ops_seconds",
			Help:    "vCenter SOAP requests by request (the SOAP method), client (soap: the vSphere API; cns, pbm, vsan) and status (success, fail-unknown).",
			Buckets: upstreamBuckets(),
		}, []string{"request", "client", "status"}),
		pvMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vsphere_cns_volume_pv_missing",
			Help: "CNS volumes of this cluster whose PersistentVolume does not exist (as vsphere_csi_syncer_orphan_volumes), per vCenter.",
		}, []string{"vc"}),
	}
}

func (u *upstream) collectors() []prometheus.Collector {
	return []prometheus.Collector{u.csiInfo, u.syncerInfo, u.csiOps, u.cnsOps, u.health, u.fullSync, u.requests, u.pvMissing}
}

// csiOptype is the upstream operation type of a CSI method; "" for the
// methods upstream does not record (node calls, capabilities, probes).
func csiOptype(method string) string {
	switch method {
	case "CreateVolume":
		return "create-volume"
	case "DeleteVolume":
		return "delete-volume"
	case "ControllerPublishVolume":
		return "attach-volume"
	case "ControllerUnpublishVolume":
		return "detach-volume"
	case "ControllerExpandVolume":
		return "expand-volume"
	case "ListVolumes":
		return "list-volume"
	case "CreateSnapshot":
		return "create-snapshot"
	case "DeleteSnapshot":
		return "delete-snapshot"
	case "ListSnapshots":
		return "list-snapshot"
	}
	return ""
}

// faultType is the upstream fault type of a CSI call: "" when it passed;
// "vim.fault.<fault>" when a vCenter fault made it fail (prefixed with
// "csi.fault.nonstorage." for the faults of a host rather than of
// storage, as upstream does); else "csi.fault.<gRPC code>" (upstream's
// csi.fault.InvalidArgument, csi.fault.NotFound, csi.fault.Internal, …).
func faultType(code, vcFault string) string {
	switch {
	case code == "OK":
		return ""
	case vcFault == "InvalidHostState", vcFault == "HostNotConnected":
		return "csi.fault.nonstorage.vim.fault." + vcFault
	case vcFault != "":
		return "vim.fault." + vcFault
	}
	return "csi.fault." + code
}

// cnsOptype is the upstream operation type of a CNS method.
func cnsOptype(method string) string {
	switch method {
	case "CnsCreateVolume":
		return "create-volume"
	case "CnsDeleteVolume":
		return "delete-volume"
	case "CnsAttachVolume":
		return "attach-volume"
	case "CnsDetachVolume":
		return "detach-volume"
	case "CnsExtendVolume":
		return "expand-volume"
	case "CnsUpdateVolumeMetadata":
		return "update-volume-metadata"
	case "CnsQueryVolume":
		return "query-volume"
	case "CnsQueryAllVolume":
		return "query-all-volume"
	case "CnsQueryVolumeInfo":
		return "query-volume-info"
	case "CnsCreateSnapshots":
		return "create-snapshot"
	case "CnsDeleteSnapshots":
		return "delete-snapshot"
	case "CnsQuerySnapshots":
		return "query-snapshots"
	case "CnsRelocateVolume":
		return "relocate-volume"
	case "CnsConfigureVolumeACLs":
		return "configure-volume-acl"
	case "CnsReconfigVolumePolicy":
		return "reconfig-volume-policy" // ours: upstream records none
	}
	return method
}

// requestClient is the upstream client label of a SOAP endpoint
// (vcenter.EndpointVIM and the others).
func requestClient(endpoint string) string {
	if endpoint == "vim25" {
		return "soap"
	}
	return endpoint
}

func passFail(failed bool) string {
	if failed {
		return statusFail
	}
	return statusPass
}

// CNSOperation records one CNS operation as a whole (vcenter.CNSObserver).
func (m *Metrics) CNSOperation(method string, failed bool, took time.Duration) {
	m.up.cnsOps.WithLabelValues(cnsOptype(method), passFail(failed)).Observe(took.Seconds())
}

// VolumeHealth sets the counts of bound PVs with an accessible and an
// inaccessible volume (syncer.Observer).
func (m *Metrics) VolumeHealth(accessible, inaccessible int) {
	m.up.health.WithLabelValues(accessibleVolumes).Set(float64(accessible))
	m.up.health.WithLabelValues(inaccessibleVols).Set(float64(inaccessible))
}

// Started records the driver's version (vsphere_csi_info) and the host of
// the vCenter it speaks to ("" for a node plugin), the vc label of
// vsphere_cns_volume_pv_missing.
func (m *Metrics) Started(version, vcenterHost string) {
	m.up.csiInfo.WithLabelValues(version).Set(1)
	m.mu.Lock()
	m.vcenter = vcenterHost
	m.mu.Unlock()
}

// SyncerStarted records that the metadata syncer runs (vsphere_syncer_info).
func (m *Metrics) SyncerStarted(version string) {
	m.up.syncerInfo.WithLabelValues(version).Set(1)
}
