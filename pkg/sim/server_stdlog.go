package sim

import (
	"strings"

	"k8s.io/klog/v2"
)

// StdlibLogWriter takes the standard library logger's lines, which is where
// the simulator's HTTP server reports things like the TLS handshake that
// govmomi's thumbprint pinning retries (harmless: it tries a verified
// handshake first). A main routes them to klog at verbosity 4 with
// log.SetOutput(sim.StdlibLogWriter{}) so a person sees only what matters.
type StdlibLogWriter struct{}

func (StdlibLogWriter) Write(p []byte) (int, error) {
	klog.V(4).InfoS("vCenter simulator", "log", strings.TrimSpace(string(p)))
	return len(p), nil
}
