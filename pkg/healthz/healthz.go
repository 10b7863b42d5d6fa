// Package healthz serves /healthz over HTTP from the driver's own Probe, so
// the livenessprobe sidecar is optional.
package healthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
)

// ProbeFunc reports whether the driver is healthy.
type ProbeFunc func(ctx context.Context) error

// Handler answers 200 "ok" when probe succeeds and 503 with the reason
// otherwise. Each request's probe gets at most timeout.
func Handler(probe ProbeFunc, timeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := probe(ctx); err != nil {
			klog.V(2).InfoS("Health check failed", "err", err)
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve serves Handler on addr until ctx ends.
func Serve(ctx context.Context, addr string, probe ProbeFunc) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	srv := &http.Server{Handler: Handler(probe, 10*time.Second), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	klog.InfoS("Serving health checks", "address", l.Addr().String(), "path", "/healthz")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
