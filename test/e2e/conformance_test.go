//go:build e2e_conformance

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/conformance"
)

// suiteRun is one run of Kubernetes' external storage suite with a
// test-driver manifest of test/e2e/conformance.
type suiteRun struct {
	name     string // block, file
	manifest string // in test/e2e/conformance
}

// conformanceRuns: the block volumes' manifest and the file volumes'.
var conformanceRuns = []suiteRun{
	{name: "block", manifest: "block.yaml"},
	{name: "file", manifest: "file.yaml"},
}

// skipRule is a --skip pattern with its reason; run, when set, limits it to
// that run (block or file).
type skipRule struct{ pattern, reason, run string }

// conformanceSkip: what no run selects, each with its reason (docs/conformance.md lists them).
var conformanceSkip = []skipRule{
	{pattern: `\[Disruptive\]`, reason: "restarts kubelet or the node over SSH (the suite's provider hooks): there is no SSH to this machine's nodes; make e2e kills and restarts kubelet and the driver itself (TestHelm's node lost, the faults tests)"},
	{pattern: `\[Feature:SELinux\]`, reason: "no SELinux on this machine's kernel"},
	{pattern: `\[Feature:Windows\]|ntfs`, reason: "Linux nodes only"},
	{pattern: `GroupSnapshot|VolumeGroupSnapshot`, reason: "CNS has no group snapshots (the capability is off in block.yaml)"},
	{pattern: `\[Flaky\]`, reason: "marked flaky by Kubernetes itself"},
	{pattern: `volume-modify-stress .*should modify volumes with a different volumeAttributesClass`, run: "block", reason: "the suite's own " +
		"assumption: it sets volumeAttributesClassName on claims whose pods it has made but not created, so with a " +
		"WaitForFirstConsumer class (what zones need: two claims of one pod in one zone) they are not bound and the API " +
		"server refuses the change (\"spec is immutable after creation except resources.requests and volumeAttributesClassName " +
		"for bound claims\", run here 2026-12-07); volume-modify's own tests, with pods, pass"},
	{pattern: `provisioning should provision storage with any volume data source`, reason: "needs the internet: the suite " +
		"deploys volume-data-source-validator with imagePullPolicy: Always (its testing-manifests/storage-csi/any-volume-datasource/" +
		"volume-data-source-validator/setup-data-source-validator.yaml), so kubelet pulls registry.k8s.io/sig-storage/" +
		"volume-data-source-validator:v1.0.0 on every start, and this machine reaches no registry but the package ones " +
		"(run here 2026-12-07: ImagePullBackOff, the test's claim never populated)"},
	{pattern: `snapshottable-stress`, run: "block", reason: "a race of the snapshot controller (external-snapshotter " +
		"v8.7.0), not of the driver: the test deletes each VolumeSnapshot seconds after making it; run here, one was removed " +
		"before the controller (client-side throttled) had put its finalizers on it, and by design the controller then keeps " +
		"the Delete-policy VolumeSnapshotContent (syncContent: no content deletion when the snapshot is gone), so the CNS " +
		"snapshot stays and CNS refuses to delete its volume (\"volume ... has snapshots\"): the test's cleanup waits 20 min " +
		"for the PV. Snapshots made, restored and deleted one at a time are covered by the snapshottable suite"},
	{pattern: `\(block volmode\)\] volumeMode should fail in binding dynamic provisioned PV to PVC`, run: "file", reason: "not " +
		"this manifest's case: the claim it makes is ReadWriteOnce (MakePersistentVolumeClaim's default), which the driver " +
		"serves as a raw block CNS volume (block.yaml claims block); file.yaml's block: false is about ReadWriteMany " +
		"claims, which are refused as raw block with InvalidArgument (pkg/driver TestCreateVolumeErrors; make e2e TestReadWriteManyBlockPending)"},
	{pattern: `\] provisioning should`, run: "file", reason: "the provisioning suite makes its claims ReadWriteOnce " +
		"(MakePersistentVolumeClaim's default; the manifest's RequiredAccessModes is not applied there), and a ReadWriteOnce " +
		"claim of the nfs4 class is refused with InvalidArgument (fstype nfs4 is for ReadWriteMany file volumes, as upstream " +
		"refuses it): run here, its claims stayed Pending. block.yaml runs the provisioning suite"},
	{pattern: `volumeMode should not mount / map unused volumes in a pod`, reason: "the suite's own assumption: it lists " +
		"/var/lib/kubelet/pods/<uid>/volumes, a path written into the test (volumemode.go listPodVolumePluginDirectory), " +
		"not --kubelet-root-dir, through a hostPID pod entering PID 1's mount namespace; the nodes here keep kubelet's " +
		"root elsewhere and the spare nodes' PID 1 is the host's. Run here, it failed with \"error checking directory " +
		"/var/lib/kubelet/pods/<uid>/volumes on node e2e-node: command terminated with exit code 1\" (make conformance, 2026-12-07)"},
}

// capSysResource is CAP_SYS_RESOURCE's bit: the ext4 online resize ioctl
// (EXT4_IOC_RESIZE_FS) needs it.
const capSysResource = 24

// noOnlineExt4Grow is skipped on a machine whose processes cannot have
// CAP_SYS_RESOURCE (not in the bounding set: no container gets it, the
// privileged node plugin neither): a mounted ext4 cannot grow there, so the
// driver grows it at the next NodeStage and NodeExpandVolume answers
// FailedPrecondition naming the capability (docs/FEATURES.md); block
// volumes and xfs grow online and their tests run.
var noOnlineExt4Grow = skipRule{
	pattern: `\(default fs\).*(volume-expand should resize volume when PVC is edited while pod is using it|ephemeral should support expansion of pvcs created for ephemeral pvcs)`,
	reason: "ext4 (the default filesystem) grown while mounted: this machine's bounding set has no CAP_SYS_RESOURCE " +
		"(/proc/self/status CapBnd), which the kernel's EXT4_IOC_RESIZE_FS asks of the node plugin; run here, the suite's " +
		"ephemeral expansion test failed with \"error waiting for pvc ... filesystem resize to finish: context deadline exceeded\". " +
		"Checked at run time: where the capability exists these tests run",
	run: "block",
}

// hasCapability says whether this process's bounding set has capability
// bit n (what a privileged container here can have).
func hasCapability(n uint) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bits, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && bits&(1<<n) != 0
		}
	}
	return false
}

// ciTests: the subset .ci/run runs (CONFORMANCE_SET=ci), by the start of
// each test's name after the driver's: one or more tests of each suite,
// chosen for what they cover; make conformance runs them all.
var ciTests = map[string][]string{
	"block": {
		"[Testpattern: Dynamic PV (default fs)] provisioning should provision storage with pvc data source",
		"[Testpattern: Dynamic PV (default fs)] volumes should store data",
		"[Testpattern: Dynamic PV (default fs)] volumeIO should write files of various sizes, verify size, validate content",
		"[Testpattern: Dynamic PV (filesystem volmode)] multiVolume [Slow] should access to two volumes with the same volume mode and retain data across pod recreation on different node",
		"[Testpattern: Dynamic PV (default fs)] subPath should support existing directory",
		"[Testpattern: Dynamic PV (block volmode)] volumeMode should fail to use a volume in a pod with mismatched mode",
		"[Testpattern: Dynamic Snapshot (retain policy)] snapshottable [Feature:VolumeSnapshotDataSource] volume snapshot controller  should check snapshot fields, check restore correctly works, check deletion (ephemeral)",
		"[Testpattern: Dynamic PV (block volmode)(allowExpansion)] volume-expand should resize volume when PVC is edited while pod is using it",
		"[Testpattern: Dynamic PV (delayed binding)] topology should provision a volume and schedule a pod with AllowedTopologies",
		"[Testpattern: Dynamic PV (default fs)] capacity provides storage capacity information",
		"[Testpattern: Dynamic PV (default fs)] fsgroupchangepolicy (OnRootMismatch)[LinuxOnly], pod created with an initial fsgroup, volume contents ownership changed via chgrp in first pod, new pod with same fsgroup skips ownership changes to the volume contents",
		"[Testpattern: Dynamic PV (filesystem volmode)] volumeLimits should verify that all csinodes have volume limits",
		"[Testpattern: Dynamic PV (default fs)] read-write-once-pod [MinimumKubeletVersion:1.27] should block a second pod from using an in-use ReadWriteOncePod volume on the same node",
		"[Testpattern: Dynamic PV (default fs)] volume-modify [FeatureGate:VolumeAttributesClass] [Feature:VolumeAttributesClass] should modify volume with no VAC",
		"[Testpattern: Generic Ephemeral-volume (default fs) (late-binding)] ephemeral should create read/write inline ephemeral volume",
	},
	"file": {
		"[Testpattern: Dynamic PV (default fs)] volumes should store data",
		"[Testpattern: Dynamic PV (filesystem volmode)] multiVolume [Slow] should concurrently access the single volume from pods on different node",
	},
}

// ciFocus is the ginkgo focus of a run's CI subset: its tests' names, quoted.
func ciFocus(run string) string {
	var q []string
	for _, n := range ciTests[run] {
		q = append(q, regexp.QuoteMeta("[Driver: csi.vsphere.vmware.com] "+n))
	}
	return strings.Join(q, "|")
}

// TestConformance installs the chart on every node (storage capacity on, as
// the capacity tests want) and runs Kubernetes' external storage e2e suite
// (the binary hack/e2e/conformance.sh built) with each test-driver manifest,
// E2E_CONFORMANCE_SET picking every selected test (full) or the CI subset
// (ci); E2E_CONFORMANCE_FOCUS, a regexp, picks instead the tests of the
// external storage suite it matches (to rerun one by hand). It fails if any test fails; it writes the table of every test run
// or skipped at run time (with the reason) to $E2E_DIR/logs/conformance and,
// with E2E_CONFORMANCE_REPORT, there too (make conformance:
// docs/conformance.md).
func TestConformance(t *testing.T) {
	if p, err := env.cluster.Running("csi-controller"); err == nil {
		t.Fatalf("the driver's controller runs as a host process (pid %d): hack/e2e.sh conformance-run stops it first", p.PID)
	}
	set := os.Getenv("E2E_CONFORMANCE_SET")
	if set != "full" && set != "ci" {
		t.Fatalf("E2E_CONFORMANCE_SET=%q: full or ci", set)
	}
	suite := filepath.Join(env.bin, "e2e-storage.test")
	for _, f := range []string{suite, filepath.Join(env.bin, "ginkgo")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: E2E_CONFORMANCE=1 hack/e2e.sh tools builds it", err)
		}
	}
	installChart(t, "storageCapacity: {enabled: true, pollInterval: 15s}\n")
	for _, n := range spareNodes(t) {
		mustKubectl(t, "taint", "node", n, spareTaint+"-")
	}
	out := filepath.Join(env.dir, "logs", "conformance")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	rules := append([]skipRule(nil), conformanceSkip...)
	if !hasCapability(capSysResource) {
		rules = append(rules, noOnlineExt4Grow)
	}
	procs := 4
	var results []conformance.Result
	start := time.Now()
	for _, r := range conformanceRuns {
		var skips []string
		for _, s := range rules {
			if s.run == "" || s.run == r.name {
				skips = append(skips, s.pattern)
			}
		}
		skip := strings.Join(skips, "|")
		focus := `External.Storage`
		if set == "ci" {
			focus = ciFocus(r.name)
		}
		if f := os.Getenv("E2E_CONFORMANCE_FOCUS"); f != "" {
			focus = `External.Storage.*(` + f + `)`
		}
		dir := filepath.Join(out, r.name)
		_ = os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"--procs", fmt.Sprint(procs), "--timeout", "3h", "--no-color", "--output-dir", dir,
			"--junit-report", "junit.xml", "--focus", focus, "--skip", skip, suite, "--",
			"--kubeconfig", env.kubeconfig,
			"--storage.testdriver", filepath.Join(env.root, "test/e2e/conformance", r.manifest),
			"--repo-root", filepath.Join(env.root, "test/e2e/conformance"),
			"--kubelet-root-dir", env.cluster.KubeletDir,
			"--report-dir", dir,
		}
		t.Logf("%s: ginkgo %s", r.name, strings.Join(args, " "))
		cmd := exec.CommandContext(t.Context(), filepath.Join(env.bin, "ginkgo"), args...)
		log, err := os.Create(filepath.Join(dir, "ginkgo.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		began := time.Now()
		runErr := cmd.Run()
		log.Close()
		res, err := conformance.ReadJUnit(filepath.Join(dir, "junit.xml"))
		if err != nil {
			t.Fatalf("%s: the suite's report: %v (ginkgo: %v; its output: %s)", r.name, err, runErr, log.Name())
		}
		res.Name, res.Manifest, res.Focus, res.Took = r.name, r.manifest, focus, time.Since(began)
		results = append(results, res)
		t.Logf("%s: %d passed, %d failed, %d skipped at run time, in %s (ginkgo: %v; output %s)", r.name,
			res.Count("passed"), res.Count("failed"), res.Count("skipped"), res.Took.Round(time.Second), runErr, log.Name())
		for _, c := range res.Cases {
			if c.State == "failed" {
				t.Errorf("%s: FAILED %s: %s", r.name, c.Name, c.Message)
			}
		}
		if runErr != nil && res.Count("failed") == 0 {
			t.Errorf("%s: ginkgo failed with no failed test in its report: %v (see %s)", r.name, runErr, log.Name())
		}
	}
	report := conformanceReport(set, procs, rules, results, time.Since(start))
	for _, f := range []string{filepath.Join(out, "conformance.md"), os.Getenv("E2E_CONFORMANCE_REPORT")} {
		if f == "" {
			continue
		}
		if err := os.WriteFile(f, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("wrote %s", f)
	}
}

// conformanceReport is docs/conformance.md: the command, the machine, the
// times, the counts, every test run or skipped at run time.
func conformanceReport(set string, procs int, rules []skipRule, results []conformance.Result, took time.Duration) string {
	var b strings.Builder
	cmd := "make conformance"
	if set == "ci" {
		cmd = "make conformance CONFORMANCE_SET=ci"
	}
	fmt.Fprintf(&b, "# Kubernetes' external storage e2e suite against this driver\n\n")
	fmt.Fprintf(&b, "Written by `%s` (test/e2e/conformance_test.go, TestConformance): Kubernetes %s's own\n", cmd, kubeVersion())
	fmt.Fprintf(&b, "storage tests (`test/e2e/storage/external`, built by hack/e2e/conformance.sh) with the test-driver\n")
	fmt.Fprintf(&b, "manifests of [test/e2e/conformance](../test/e2e/conformance), against the chart installed on three\n")
	fmt.Fprintf(&b, "nodes of the e2e cluster (two zones) and the embedded vCenter. The capabilities each manifest\n")
	fmt.Fprintf(&b, "leaves off are listed, with the reason, at the end of the manifest.\n\n")
	fmt.Fprintf(&b, "- run: %s, commit %s, %d ginkgo processes; %s in all\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), gitCommit(), procs, took.Round(time.Second))
	fmt.Fprintf(&b, "- machine: %s, %d cores, kernel %s\n", cpuModel(), runtime.NumCPU(), kernel())
	fmt.Fprintf(&b, "\nNot run (`--skip`), and why:\n\n")
	for _, s := range rules {
		only := ""
		if s.run != "" {
			only = " (" + s.run + ".yaml only)"
		}
		fmt.Fprintf(&b, "- `%s`%s: %s\n", s.pattern, only, s.reason)
	}
	fmt.Fprintf(&b, "\n")
	fmt.Fprintf(&b, "| manifest | passed | failed | skipped at run time | time |\n|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s |\n", r.Manifest, r.Count("passed"), r.Count("failed"), r.Count("skipped"), r.Took.Round(time.Second))
	}
	for _, r := range results {
		fmt.Fprintf(&b, "\n## %s\n\nFocus: `%s`\n\n| test | result | seconds | reason |\n|---|---|---|---|\n", r.Manifest, r.Focus)
		for _, c := range r.Cases {
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s |\n", mdCell(c.Name), c.State, c.Seconds, mdCell(c.Message))
		}
	}
	return b.String()
}

// mdCell escapes a table cell's pipes.
func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func kubeVersion() string {
	v, err := env.kube.Discovery().ServerVersion()
	if err != nil {
		return "?"
	}
	return v.GitVersion
}

// gitCommit is the commit the run tested, "+ changes" when the tree had
// changes not committed (other than the report itself).
func gitCommit() string {
	out, err := exec.Command("git", "-C", env.root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "?"
	}
	c := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", env.root, "status", "--porcelain", "--", ".", ":!docs/conformance.md").Output()
	if err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " + changes not committed then"
	}
	return c
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}
