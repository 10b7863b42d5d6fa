// Package metrics serves the driver's Prometheus metrics: CSI calls by method
// and gRPC code, vCenter SOAP calls by method and fault, vCenter tasks in
// flight. These are what the sidecars can't see.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
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
	m.registry.MustRegister(m.csi, m.soap, m.tasks, m.refused, m.inDoubt, m.nodeVMs, m.updates,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// ObserveCSI records one CSI call.
func (m *Metrics) ObserveCSI(method, code string, d time.Duration) {
	m.csi.WithLabelValues(method, code).Observe(d.Seconds())
}

// SOAPCall records one vCenter SOAP call (vcenter.Observer).
func (m *Metrics) SOAPCall(method, fault string, d time.Duration) {
	m.soap.WithLabelValues(method, fault).Observe(d.Seconds())
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
