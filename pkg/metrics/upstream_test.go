package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// The observer interfaces the driver's packages call, implemented by
// Metrics (app wires them by type assertion: a method that drifted would
// silently record nothing).
var (
	_ driver.CallObserver      = (*Metrics)(nil)
	_ vcenter.Observer         = (*Metrics)(nil)
	_ vcenter.EndpointObserver = (*Metrics)(nil)
	_ vcenter.CNSObserver      = (*Metrics)(nil)
	_ syncer.Observer          = (*Metrics)(nil)
)

// scrape returns what /metrics serves.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func wantSeries(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// TestUpstreamCSIOperations: a controller call is recorded under the
// upstream driver's name with its volume type, operation type, status and
// fault type; node calls are not (upstream records controller operations
// only), and ours keeps every call.
func TestUpstreamCSIOperations(t *testing.T) {
	m := New()
	m.ObserveCSI("CreateVolume", "OK", "file", "", 3*time.Second)
	m.ObserveCSI("ControllerPublishVolume", "NotFound", "block", "NotFound", time.Second)
	m.ObserveCSI("ControllerPublishVolume", "Internal", "block", "HostNotConnected", time.Second)
	m.ObserveCSI("DeleteVolume", "InvalidArgument", "unknown", "", time.Millisecond)
	m.ObserveCSI("ControllerExpandVolume", "OK", "block", "", time.Second)
	m.ObserveCSI("ControllerUnpublishVolume", "OK", "file", "", time.Second)
	m.ObserveCSI("CreateSnapshot", "ResourceExhausted", "block", "", time.Second)
	m.ObserveCSI("NodeStageVolume", "OK", "block", "", time.Second)
	body := scrape(t, m)
	wantSeries(t, body,
		`vsphere_csi_volume_ops_histogram_count{faulttype="",optype="create-volume",status="pass",voltype="file"} 1`,
		`vsphere_csi_volume_ops_histogram_bucket{faulttype="",optype="create-volume",status="pass",voltype="file",le="2"} 0`,
		`vsphere_csi_volume_ops_histogram_bucket{faulttype="",optype="create-volume",status="pass",voltype="file",le="5"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="vim.fault.NotFound",optype="attach-volume",status="fail",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="csi.fault.nonstorage.vim.fault.HostNotConnected",optype="attach-volume",status="fail",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="csi.fault.InvalidArgument",optype="delete-volume",status="fail",voltype="unknown"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="",optype="expand-volume",status="pass",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="",optype="detach-volume",status="pass",voltype="file"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="csi.fault.ResourceExhausted",optype="create-snapshot",status="fail",voltype="block"} 1`,
		`vsphere_csi_operation_duration_seconds_count{code="OK",method="NodeStageVolume"} 1`,
	)
	if strings.Contains(body, "NodeStageVolume\",status") || strings.Contains(body, `optype="NodeStageVolume"`) || strings.Contains(body, `optype=""`) {
		t.Error("a node call was recorded under the upstream controller-operation metric")
	}
}

// TestUpstreamVCenterRequests: a SOAP call is recorded per request, client
// (vim25 is upstream's "soap") and status; a CNS operation as a whole by
// operation type and status.
func TestUpstreamVCenterRequests(t *testing.T) {
	m := New()
	m.SOAPCallTo(vcenter.EndpointVIM, "RetrievePropertiesEx", "", time.Millisecond)
	m.SOAPCallTo(vcenter.EndpointCNS, "CnsCreateVolume", "NotAuthenticated", time.Millisecond)
	m.SOAPCallTo(vcenter.EndpointPBM, "PbmQueryProfile", "", time.Millisecond)
	m.SOAPCallTo(vcenter.EndpointVSAN, "VsanQueryVcClusterHealthSummary", "NetworkError", time.Millisecond)
	m.CNSOperation("CnsAttachVolume", false, 12*time.Second)
	m.CNSOperation("CnsAttachVolume", true, time.Second)
	m.CNSOperation("CnsQueryVolume", false, time.Second)
	m.CNSOperation("CnsExtendVolume", false, time.Second)
	body := scrape(t, m)
	wantSeries(t, body,
		`vsphere_request_ops_seconds_count{client="soap",request="RetrievePropertiesEx",status="success"} 1`,
		`vsphere_request_ops_seconds_count{client="cns",request="CnsCreateVolume",status="fail-unknown"} 1`,
		`vsphere_request_ops_seconds_count{client="pbm",request="PbmQueryProfile",status="success"} 1`,
		`vsphere_request_ops_seconds_count{client="vsan",request="VsanQueryVcClusterHealthSummary",status="fail-unknown"} 1`,
		// ours, from the same calls
		`vsphere_csi_vcenter_call_duration_seconds_count{fault="NotAuthenticated",method="CnsCreateVolume"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="attach-volume",status="pass"} 1`,
		`vsphere_cns_volume_ops_histogram_bucket{optype="attach-volume",status="pass",le="10"} 0`,
		`vsphere_cns_volume_ops_histogram_bucket{optype="attach-volume",status="pass",le="15"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="attach-volume",status="fail"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="query-volume",status="pass"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="expand-volume",status="pass"} 1`,
	)
}

// TestUpstreamSyncerMetrics: full syncs by status, volume health by type,
// CNS volumes without a PV per vCenter, the versions.
func TestUpstreamSyncerMetrics(t *testing.T) {
	m := New()
	m.Started("v1.2.3", "vc.example.com")
	m.SyncerStarted("v1.2.3")
	m.FullSync(3*time.Second, 2, nil)
	m.FullSync(time.Second, 0, errors.New("vCenter unavailable"))
	m.Findings(4, 1)
	m.VolumeHealth(7, 2)
	body := scrape(t, m)
	wantSeries(t, body,
		`vsphere_full_sync_ops_histogram_count{status="pass"} 1`,
		`vsphere_full_sync_ops_histogram_count{status="fail"} 1`,
		`vsphere_csi_syncer_full_syncs_total 2`,
		`vsphere_volume_health_gauge{volume_health_type="accessible-volumes"} 7`,
		`vsphere_volume_health_gauge{volume_health_type="inaccessible-volumes"} 2`,
		`vsphere_cns_volume_pv_missing{vc="vc.example.com"} 4`,
		`vsphere_csi_syncer_orphan_volumes 4`,
		`vsphere_csi_info{version="v1.2.3"} 1`,
		`vsphere_syncer_info{version="v1.2.3"} 1`,
	)
}
