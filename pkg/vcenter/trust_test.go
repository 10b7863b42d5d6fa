package vcenter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// writeCA replaces the CA file at once, as the kubelet updates a mounted
// Secret (a new file renamed over the old).
func writeCA(t *testing.T, path string, pem []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCARotationWithoutRestart (issue 23, item 7): vCenter serves a
// certificate issued by CA1, which the driver's ca-file holds; the
// certificate is re-issued by CA2 (vCenter's services restart: every
// connection is reset). The same client fails, saying the ca-file does not
// trust the certificate, until the file holds CA2; then its calls and its
// inventory watch work again, without a new client.
func TestCARotationWithoutRestart(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	ca1, err := s.ReissueCertificate()
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(t.TempDir(), "vcenter-ca.pem")
	writeCA(t, caPath, ca1)
	e := connectEnv(t, s, func(o *Options) { o.Thumbprint, o.CAFile = "", caPath })
	ctx := ctxT(t)
	if _, err := e.c.FindVolumeByName(ctx, "x"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("with CA1: %v, want ErrVolumeNotFound", err)
	}

	ca2, err := s.ReissueCertificate()
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.FindVolumeByName(ctx, "x")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not trusted by ca-file "+caPath) {
		t.Fatalf("re-issued by CA2, the file still CA1: %v, want ErrUnavailable naming the ca-file", err)
	}

	writeCA(t, caPath, ca2)
	if _, err := e.c.FindVolumeByName(ctx, "x"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("the file now CA2: %v, want ErrVolumeNotFound (the call done)", err)
	}
	deadline := time.Now().Add(time.Minute) // a hang guard: the watch retries within 5 s
	for e.c.Healthy(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the inventory watch did not come back: %v", e.c.Healthy(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCAFileRoots: the file is parsed again when its bytes change; a file
// that becomes unusable keeps the certificates read before; one that is
// unusable from the start is an error.
func TestCAFileRoots(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.pem")
	f := &caFile{path: path}
	if _, err := f.roots(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: %v, want an error naming it", err)
	}
	writeCA(t, path, []byte("not a certificate"))
	if _, err := f.roots(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("no certificate: %v", err)
	}
	s := simtest.Start(t, sim.Options{NodeVMs: 0})
	writeCA(t, path, s.CAPEM())
	first, err := f.roots()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := f.roots(); again != first {
		t.Error("the same bytes were parsed again")
	}
	ca2, err := s.ReissueCertificate()
	if err != nil {
		t.Fatal(err)
	}
	writeCA(t, path, ca2)
	second, err := f.roots()
	if err != nil || second == first {
		t.Fatalf("changed file: same pool %v, err %v", second == first, err)
	}
	writeCA(t, path, []byte("truncated"))
	if kept, err := f.roots(); err != nil || kept != second {
		t.Fatalf("unusable file after a good one: err %v, kept the last pool %v", err, kept == second)
	}
}

// TestInsecureWarning: insecure-flag with nothing to verify against is
// warned about, naming the risk and what to set; anything that verifies
// is not.
func TestInsecureWarning(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		warn bool
	}{
		{"insecure, nothing pinned", Options{Insecure: true}, true},
		{"insecure with a CA file", Options{Insecure: true, CAFile: "/ca.pem"}, false},
		{"insecure with a thumbprint", Options{Insecure: true, Thumbprint: "AA:BB"}, false},
		{"verified by the system's CAs", Options{}, false},
		{"verified by a CA file", Options{CAFile: "/ca.pem"}, false},
	} {
		w := insecureWarning(tc.opts)
		if (w != "") != tc.warn {
			t.Errorf("%s: warning %q, want one: %v", tc.name, w, tc.warn)
			continue
		}
		if tc.warn {
			for _, want := range []string{"not verified", "password", "ca-file", "thumbprint", "insecure-flag = false"} {
				if !strings.Contains(w, want) {
					t.Errorf("%s: warning %q does not say %q", tc.name, w, want)
				}
			}
		}
	}
}

// TestInsecureWarningLoggedAtConnect: connecting with insecure-flag and
// nothing pinned logs the warning, once.
func TestInsecureWarningLoggedAtConnect(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	var mu sync.Mutex
	var lines []string
	klog.SetLogger(funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{}))
	t.Cleanup(klog.ClearLogger)
	e := connectEnv(t, s, func(o *Options) { o.Thumbprint, o.Insecure = "", true })
	if _, err := e.c.FindVolumeByName(ctxT(t), "x"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("insecure client: %v", err)
	}
	klog.ClearLogger()
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "names neither ca-file nor thumbprint") && strings.Contains(l, s.Host()) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the warning (with the host) was logged %d times, want once; log:\n%s", n, strings.Join(lines, "\n"))
	}
}
