package healthz

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	var failing, notReady error
	srv := httptest.NewServer(Handler(func(context.Context) error { return failing }, func(context.Context) error { return notReady }, time.Second))
	defer srv.Close()
	getPath := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func() (int, string) { return getPath("/healthz") }
	if code, body := get(); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("healthy: %d %q, want 200 ok", code, body)
	}
	// vCenter's errors name its host and the driver's user: /readyz and
	// /healthz answer anyone, so they say the reason given, never the error.
	notReady = WithReason(errors.New("vcenter: login to vc.example.com as k8s-csi@vsphere.local: refused"), "vCenter session not usable: not authenticated to vCenter")
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("not ready but alive: /healthz %d, want 200", code)
	}
	code, body := getPath("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "vCenter session not usable: not authenticated to vCenter") {
		t.Fatalf("not ready: /readyz %d %q, want 503 with the reason", code, body)
	}
	if strings.Contains(body, "vc.example.com") || strings.Contains(body, "k8s-csi") {
		t.Errorf("/readyz answers vCenter's host or the user: %q", body)
	}
	failing = errors.New("stuck talking to vc.example.com")
	code, body = get()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "see the driver's log") || strings.Contains(body, "vc.example.com") {
		t.Fatalf("unhealthy without a reason: %d %q, want 503 pointing at the log, not quoting the error", code, body)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", func(context.Context) error { return nil }, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
}
