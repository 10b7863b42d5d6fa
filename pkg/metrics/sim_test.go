package metrics

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// TestUpstreamMetricsThroughTheDriver: CSI calls over gRPC to a controller
// on the embedded vCenter are recorded under the upstream driver's names
// with the labels upstream gives them: a block volume made, an expand that
// vCenter's task refuses with NoPermission (faulttype vim.fault.NoPermission,
// and the CNS operation failed), the SOAP requests by endpoint.
func TestUpstreamMetricsThroughTheDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded vCenter: not in -short (make unit); make test runs it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(t.TempDir(), "vc"), NodeVMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m := New()
	vc, err := vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: sim.DefaultUsername, Password: sim.DefaultPassword,
		Thumbprint: s.Thumbprint(), ClusterID: "metrics-test", Observer: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close(context.Background()) })
	d, err := driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "test"}, vc, nil)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	l, err := driver.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx, l, m) }()
	t.Cleanup(func() { cancel(); <-served })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cc := csi.NewControllerClient(conn)

	created, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name: "pvc-metrics", Parameters: map[string]string{"storagepolicyname": "Gold"},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetVolume().GetVolumeId()
	if _, err := s.InjectFault(sim.FaultRule{Method: "CnsExtendVolume", Fault: sim.FaultNoPermission, InTask: true, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = cc.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("expand with the task refused: %v, want PermissionDenied", err)
	}
	if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("DeleteVolume without an ID: %v, want InvalidArgument", err)
	}

	body := scrape(t, m)
	wantSeries(t, body,
		`vsphere_csi_volume_ops_histogram_count{faulttype="",optype="create-volume",status="pass",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="vim.fault.NoPermission",optype="expand-volume",status="fail",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="",optype="delete-volume",status="pass",voltype="block"} 1`,
		`vsphere_csi_volume_ops_histogram_count{faulttype="csi.fault.InvalidArgument",optype="delete-volume",status="fail",voltype="unknown"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="create-volume",status="pass"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="expand-volume",status="fail"} 1`,
		`vsphere_cns_volume_ops_histogram_count{optype="delete-volume",status="pass"} 1`,
		`vsphere_request_ops_seconds_count{client="cns",request="CnsCreateVolume",status="success"} 1`,
		`vsphere_request_ops_seconds_count{client="cns",request="CnsExtendVolume",status="success"} 1`,
	)
	for _, client := range []string{"soap", "pbm"} {
		if !regexp.MustCompile(`vsphere_request_ops_seconds_count\{client="` + client + `",request="[A-Za-z_]+",status="success"\} [1-9]`).MatchString(body) {
			t.Errorf("no successful request of client %s recorded", client)
		}
	}
}
