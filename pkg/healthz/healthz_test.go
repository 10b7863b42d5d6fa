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
	notReady = errors.New("vCenter session not healthy")
	if code, _ := get(); code != http.StatusOK {
		t.Fatalf("not ready but alive: /healthz %d, want 200", code)
	}
	if code, body := getPath("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "vCenter session not healthy") {
		t.Fatalf("not ready: /readyz %d %q, want 503 naming the reason", code, body)
	}
	failing = errors.New("stuck")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "stuck") {
		t.Fatalf("unhealthy: %d %q, want 503 naming the reason", code, body)
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
