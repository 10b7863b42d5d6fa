package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMetricsAreServed(t *testing.T) {
	m := New()
	m.ObserveCSI("CreateVolume", "OK", "block", "", 30*time.Millisecond)
	m.ObserveCSI("CreateVolume", "InvalidArgument", "unknown", "", time.Millisecond)
	m.SOAPCall("CnsCreateVolume", "", 20*time.Millisecond)
	m.SOAPCall("CnsQueryVolume", "NotAuthenticated", 2*time.Millisecond)
	m.TasksInFlight(2)

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vsphere_csi_operation_duration_seconds_count{code="OK",method="CreateVolume"} 1`,
		`vsphere_csi_operation_duration_seconds_count{code="InvalidArgument",method="CreateVolume"} 1`,
		`vsphere_csi_vcenter_call_duration_seconds_count{fault="",method="CnsCreateVolume"} 1`,
		`vsphere_csi_vcenter_call_duration_seconds_count{fault="NotAuthenticated",method="CnsQueryVolume"} 1`,
		`vsphere_csi_vcenter_tasks_in_flight 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
