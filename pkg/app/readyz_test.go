package app

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/healthz"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// TestReadyzNamesNoHostOrUser (issue 23, item 7): the driver's vCenter
// password stops working; its session's error names vCenter's host and the
// user, and /readyz, which anyone who reaches the port may ask, answers
// the kind of failure without them.
func TestReadyzNamesNoHostOrUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := simtest.Start(t, sim.Options{NodeVMs: 1, Username: "csi-readyz@vsphere.local"})
	cfg, err := config.Parse(strings.NewReader(s.ConfigINI("test-cluster", false)), "test")
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vcenter.New(ctx, VCenterOptions(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close(context.Background())
	srv := httptest.NewServer(healthz.Handler(func(context.Context) error { return nil }, readiness(vc.Healthy), 10*time.Second))
	defer srv.Close()

	s.SetPassword("Ch4nged-elsewhere!")
	if _, err := s.EndSessions(ctx); err != nil {
		t.Fatal(err)
	}
	for { // the watch logs in again, refused
		err := vc.Healthy(ctx)
		if err != nil && strings.Contains(err.Error(), s.Username()) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the session's error never named the user: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "vCenter session not usable: not authenticated to vCenter") {
		t.Fatalf("/readyz: %d %q, want 503 saying the session is not authenticated", resp.StatusCode, body)
	}
	for _, secret := range []string{s.Host(), s.Username(), "csi-readyz"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz answers %q: %q", secret, body)
		}
	}
}
