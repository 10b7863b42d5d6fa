// Package conformance is Kubernetes' storage e2e suite, built as one test
// binary against this driver (make conformance): the external storage
// tests (--storage.testdriver=<manifest>) and the storage suites they run.
// Only the storage tests are linked, not the whole of test/e2e.
package conformance

import (
	"flag"
	"os"
	"testing"

	"k8s.io/kubernetes/test/e2e"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"
	"k8s.io/kubernetes/test/e2e/framework/testfiles"
	_ "k8s.io/kubernetes/test/e2e/storage"
	_ "k8s.io/kubernetes/test/e2e/storage/external"
	e2etestingmanifests "k8s.io/kubernetes/test/e2e/testing-manifests"
	testfixtures "k8s.io/kubernetes/test/fixtures"
)

// TestMain reads the suite's flags as Kubernetes' own e2e.test does.
func TestMain(m *testing.M) {
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()
	framework.AfterReadingAllFlags(&framework.TestContext)
	// The test-driver manifest's FromFile names are relative to --repo-root
	// (make conformance passes test/e2e/conformance).
	testfiles.AddFileSource(testfiles.RootFileSource{Root: framework.TestContext.RepoRoot})
	testfiles.AddFileSource(e2etestingmanifests.GetE2ETestingManifestsFS())
	testfiles.AddFileSource(testfixtures.GetTestFixturesFS())
	os.Exit(m.Run())
}

// TestE2E runs the selected tests of the suite (ginkgo's focus and skip).
func TestE2E(t *testing.T) {
	e2e.RunE2ETests(t)
}
