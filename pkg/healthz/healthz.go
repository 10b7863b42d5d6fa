// Package healthz serves /healthz (liveness: the driver answers) from the
// driver's own Probe, so the livenessprobe sidecar is optional, and
// /readyz (readiness: it can do its work, e.g. its vCenter session is
// usable).
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

// Handler answers /healthz with 200 "ok" when live succeeds and 503 with
// the reason otherwise, /readyz the same from ready (nil: as /healthz).
// Each request's check gets at most timeout.
func Handler(live, ready ProbeFunc, timeout time.Duration) http.Handler {
	if ready == nil {
		ready = live
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", check("Health", live, timeout))
	mux.Handle("/readyz", check("Readiness", ready, timeout))
	return mux
}

func check(what string, probe ProbeFunc, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := probe(ctx); err != nil {
			klog.V(2).InfoS(what+" check failed", "err", err)
			http.Error(w, "not ok: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Serve serves Handler on addr until ctx ends.
func Serve(ctx context.Context, addr string, live, ready ProbeFunc) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	srv := &http.Server{Handler: Handler(live, ready, 10*time.Second), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	klog.InfoS("Serving health checks", "address", l.Addr().String(), "liveness", "/healthz", "readiness", "/readyz")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
