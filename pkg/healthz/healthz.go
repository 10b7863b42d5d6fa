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
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// ProbeFunc reports whether the driver is healthy.
type ProbeFunc func(ctx context.Context) error

// The endpoints answer whoever reaches them, without authentication, so an
// answer never quotes the error (vCenter's errors name its host and the
// driver's user): it says the reason WithReason gave, or only where to
// look, and the error itself is logged.

// WithReason is err answered as reason ("vCenter session not usable:
// vCenter unavailable").
func WithReason(err error, reason string) error {
	if err == nil {
		return nil
	}
	return &reasonError{reason: reason, err: err}
}

type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// reason is what may be answered for err.
func reason(err error) string {
	var r *reasonError
	if errors.As(err, &r) {
		return r.reason
	}
	return "see the driver's log"
}

// Handler answers /healthz with 200 "ok" when live succeeds and 503 with
// the reason (WithReason) otherwise, /readyz the same from ready (nil: as
// /healthz).
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
	var logged failureLog
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if err := probe(ctx); err != nil {
			logged.log(what+" check failed", err)
			http.Error(w, "not ok: "+reason(err), http.StatusServiceUnavailable)
			return
		}
		logged.reset()
		fmt.Fprintln(w, "ok")
	})
}

// failureLog logs a check's failure in full when it differs from the one
// logged last, and at verbosity 2 while it stays the same, so that a
// probe every few seconds does not fill the log.
type failureLog struct {
	mu   sync.Mutex
	last string
}

func (l *failureLog) log(msg string, err error) {
	l.mu.Lock()
	same := l.last == err.Error()
	l.last = err.Error()
	l.mu.Unlock()
	if same {
		klog.V(2).InfoS(msg, "err", err)
		return
	}
	klog.InfoS(msg, "err", err)
}

func (l *failureLog) reset() {
	l.mu.Lock()
	l.last = ""
	l.mu.Unlock()
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
