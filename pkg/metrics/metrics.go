// Package metrics serves the driver's Prometheus metrics: CSI calls by method
// and gRPC code, vCenter SOAP calls by method and fault, vCenter tasks in
// flight, the metadata syncer's work. These are what the sidecars can't see.
// The upstream driver's metrics are served too, under its names and labels
// (upstream.go); docs/METRICS.md lists every metric.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// Metrics holds the driver's collectors in a registry of its own.
type Metrics struct {
	registry *prometheus.Registry
	csi      *prometheus.HistogramVec
	soap     *prometheus.HistogramVec
	tasks    prometheus.Gauge
	refused  prometheus.Counter
	inDoubt  *prometheus.CounterVec
	nodeVMs  prometheus.Gauge
	updates  prometheus.Counter

	// The metadata syncer's (syncer.Observer).
	metaCalls   *prometheus.CounterVec
	metaVolumes prometheus.Counter
	metaLag     prometheus.Histogram
	fullSyncs   prometheus.Counter
	fullSyncDur prometheus.Gauge
	repaired    prometheus.Counter
	orphans     prometheus.Gauge
	missing     prometheus.Gauge

	up *upstream // the upstream driver's names

	mu      sync.Mutex
	vcenter string // the vCenter's host (Started): vsphere_cns_volume_pv_missing's vc label
}

// New makes the collectors and registers them.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		csi: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vsphere_csi", Name: "operation_duration_seconds",
			Help:    "CSI calls by method and gRPC code.",
			Buckets: []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"method", "code"}),
		soap: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "vsphere_csi", Name: "vcenter_call_duration_seconds",
			Help:    "vCenter SOAP calls by method and fault (empty when none).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 300},
		}, []string{"method", "fault"}),
		tasks: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "vsphere_csi", Name: "vcenter_tasks_in_flight",
			Help: "vCenter tasks the driver is waiting for.",
		}),
	}
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Name: "vcenter_logins_refused_total",
		Help: "Logins vCenter refused (wrong or rotated credentials in csi-vsphere.conf).",
	})
	m.inDoubt = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Name: "vcenter_tasks_in_doubt_waited_total",
		Help: "Running vCenter tasks an operation waited for because they may be this cluster's on the same object (of a restarted controller, the other replica, or a call whose answer was lost), by operation.",
	}, []string{"operation"})
	m.nodeVMs = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "vsphere_csi", Name: "cluster_node_vms",
		Help: "VMs of this cluster's nodes the controller knows (from the CSINode objects of this driver, or --node-uuids); not set when every VM of the datacenters counts.",
	})
	m.updates = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Name: "vcenter_watch_object_updates_total",
		Help: "Object updates the inventory watch received from vCenter (node VMs, datastores, hosts, tasks): what following vCenter costs.",
	})
	m.syncerMetrics()
	m.registry.MustRegister(m.csi, m.soap, m.tasks, m.refused, m.inDoubt, m.nodeVMs, m.updates,
		m.metaCalls, m.metaVolumes, m.metaLag, m.fullSyncs, m.fullSyncDur, m.repaired, m.orphans, m.missing,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.up = newUpstream()
	m.registry.MustRegister(m.up.collectors()...)
	return m
}

func (m *Metrics) syncerMetrics() {
	m.metaCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "metadata_calls_total",
		Help: "CnsUpdateVolumeMetadata calls of the metadata syncer, by result (ok, failed: the call as a whole).",
	}, []string{"result"})
	m.metaVolumes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "metadata_volumes_total",
		Help: "Volumes whose CNS metadata (PV, claim, pods) the syncer wrote.",
	})
	m.metaLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "change_to_cns_seconds",
		Help:    "From a change of a PV, claim or pod to its volume's metadata written in CNS.",
		Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
	})
	m.fullSyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "full_syncs_total",
		Help: "Full syncs of CNS metadata done.",
	})
	m.fullSyncDur = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "last_full_sync_seconds",
		Help: "How long the last full sync took.",
	})
	m.repaired = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "full_sync_repaired_volumes_total",
		Help: "Volumes whose CNS metadata a full sync found drifted and put right.",
	})
	m.orphans = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "orphan_volumes",
		Help: "CNS volumes of this cluster that no PersistentVolume names (vsphere-csi orphans lists them).",
	})
	m.missing = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "vsphere_csi", Subsystem: "syncer", Name: "pvs_missing_volume",
		Help: "PersistentVolumes of this driver whose CNS volume does not exist.",
	})
}

// MetadataSent records one metadata call of the syncer (syncer.Observer).
func (m *Metrics) MetadataSent(volumes int, failed bool, lags []time.Duration) {
	result := "ok"
	if failed {
		result = "failed"
	}
	m.metaCalls.WithLabelValues(result).Inc()
	m.metaVolumes.Add(float64(len(lags)))
	for _, l := range lags {
		m.metaLag.Observe(l.Seconds())
	}
}

// FullSync records a full sync, failed when err is not nil
// (syncer.Observer).
func (m *Metrics) FullSync(took time.Duration, updated int, err error) {
	m.fullSyncs.Inc()
	m.fullSyncDur.Set(took.Seconds())
	m.repaired.Add(float64(updated))
	m.up.fullSync.WithLabelValues(passFail(err != nil)).Observe(took.Seconds())
}

// Findings sets the orphan and missing-volume counts (syncer.Observer).
func (m *Metrics) Findings(orphans, missing int) {
	m.orphans.Set(float64(orphans))
	m.missing.Set(float64(missing))
	m.mu.Lock()
	vc := m.vcenter
	m.mu.Unlock()
	m.up.pvMissing.WithLabelValues(vc).Set(float64(orphans))
}

// ObserveCSI records one CSI call (driver.CallObserver).
func (m *Metrics) ObserveCSI(method, code, volumeType, vcFault string, d time.Duration) {
	m.csi.WithLabelValues(method, code).Observe(d.Seconds())
	if op := csiOptype(method); op != "" {
		m.up.csiOps.WithLabelValues(volumeType, op, passFail(code != "OK"), faultType(code, vcFault)).Observe(d.Seconds())
	}
}

// SOAPCall records one vCenter SOAP call whose endpoint is not known
// (vcenter.Observer); the client uses SOAPCallTo.
func (m *Metrics) SOAPCall(method, fault string, d time.Duration) {
	m.soap.WithLabelValues(method, fault).Observe(d.Seconds())
}

// SOAPCallTo records one vCenter SOAP call to an endpoint
// (vcenter.EndpointObserver).
func (m *Metrics) SOAPCallTo(endpoint, method, fault string, d time.Duration) {
	m.SOAPCall(method, fault, d)
	status := requestSuccess
	if fault != "" {
		status = requestFail
	}
	m.up.requests.WithLabelValues(method, requestClient(endpoint), status).Observe(d.Seconds())
}

// TasksInFlight sets how many vCenter tasks are being waited for (vcenter.Observer).
func (m *Metrics) TasksInFlight(n int) { m.tasks.Set(float64(n)) }

// LoginRefused counts a login vCenter refused (vcenter.Observer).
func (m *Metrics) LoginRefused() { m.refused.Inc() }

// NodeVMs sets how many node VMs the controller knows (vcenter.Observer).
func (m *Metrics) NodeVMs(n int) { m.nodeVMs.Set(float64(n)) }

// WatchUpdates counts the object updates of a watch answer (vcenter.Observer).
func (m *Metrics) WatchUpdates(n int) { m.updates.Add(float64(n)) }

// TasksInDoubt counts the tasks an operation waited for (vcenter.Observer).
func (m *Metrics) TasksInDoubt(op string, n int) { m.inDoubt.WithLabelValues(op).Add(float64(n)) }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// Serve serves /metrics on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	klog.InfoS("Serving metrics", "address", l.Addr().String())
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
