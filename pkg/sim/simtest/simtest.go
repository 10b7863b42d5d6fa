// Package simtest starts the embedded vCenter (pkg/sim) for the tests of
// other packages: in a directory of the test's, closed when the test ends,
// and skipped under -short (the fast tier, make unit) with the reason said.
//
// pkg/sim's own tests keep helpers of their own (helpers_test.go): a
// package's internal tests can't import a package that imports it.
package simtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// startWait bounds Start: a hang guard, not a timing assertion.
const startWait = time.Minute

// SkipShort skips a test that is not in the fast tier (`make unit`,
// go test -short), saying why.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + ": not in -short (make unit); make test runs it")
	}
}

// Start starts the embedded vCenter with opts for the test t, or skips t
// under -short. Its state goes to opts.Dir, or to a directory of the
// test's when that is empty; it is closed when the test (with its
// subtests) ends, after the test's deferred calls. A test that stops it
// itself (a restart) may: closing twice is harmless here.
func Start(t testing.TB, opts sim.Options) *sim.Sim {
	t.Helper()
	SkipShort(t, "starts the embedded vCenter")
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "vc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startWait)
	defer cancel()
	s, err := sim.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the embedded vCenter: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
