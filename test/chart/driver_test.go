package chart

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
)

// Flags of the pinned sidecar releases, read from their sources (csi-lib-utils standardflags,
// klog, and each command's own flags). A misspelt flag makes a sidecar exit at start.
var (
	commonSidecarFlags = []string{
		"version", "kubeconfig", "csi-address", "leader-election", "leader-election-namespace",
		"leader-election-lease-duration", "leader-election-renew-deadline", "leader-election-retry-period",
		"leader-election-labels", "kube-api-qps", "kube-api-burst", "http-endpoint", "metrics-address",
		"metrics-path", "automaxprocs", "v", "vmodule", "feature-gates",
	}
	sidecarFlags = map[string][]string{
		"csi-provisioner": { // external-provisioner v6.3.0
			"master", "volume-name-prefix", "volume-name-uuid-length", "retry-interval-start", "retry-interval-max",
			"worker-threads", "cloning-protection-threads", "snapshot-orphan-sweep-interval", "capacity-threads",
			"timeout", "strict-topology", "immediate-topology", "extra-create-metadata", "enable-pprof",
			"default-fstype", "kube-api-capacity-burst", "enable-capacity", "capacity-for-immediate-binding",
			"capacity-poll-interval", "capacity-ownerref-level", "node-deployment", "node-deployment-immediate-binding",
			"node-deployment-base-delay", "node-deployment-max-delay", "controller-publish-readonly",
			"prevent-volume-mode-conversion", "logging-format",
		},
		"csi-attacher": { // external-attacher v4.13.0
			"resync", "timeout", "retry-interval-start", "retry-interval-max", "worker-threads", "max-entries",
			"default-fstype", "reconcile-sync", "max-grpc-log-length",
		},
		"csi-resizer": { // external-resizer v2.x
			"master", "resync-period", "workers", "extra-modify-metadata", "timeout", "resize-timeout",
			"modify-timeout", "retry-interval-start", "retry-interval-max", "handle-volume-inuse-error",
		},
		"csi-snapshotter": { // external-snapshotter v8.6.0 sidecar
			"resync-period", "snapshot-name-prefix", "snapshot-name-uuid-length", "worker-threads", "timeout",
			"extra-create-metadata", "retry-interval-start", "retry-interval-max", "node-deployment",
			"groupsnapshot-name-prefix", "groupsnapshot-name-uuid-length",
		},
		"liveness-probe": {"csi-address", "probe-timeout", "health-port", "http-endpoint", "metrics-address", "metrics-path", "v", "version"},
		"node-driver-registrar": {
			"csi-address", "kubelet-registration-path", "plugin-registration-path", "health-port", "http-endpoint",
			"mode", "timeout", "enable-pprof", "v", "version",
		},
	}
)

var flagName = regexp.MustCompile(`^--?([a-z][a-z0-9-]*)(=.*)?$`)

func argFlags(args []string) []string {
	var names []string
	for _, a := range args {
		if m := flagName.FindStringSubmatch(a); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// TestSidecarFlagsKnown: every flag given to a sidecar exists in its pinned release.
func TestSidecarFlagsKnown(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			for workload, spec := range podSpecs(objs) {
				for _, c := range spec.Containers {
					known, ok := sidecarFlags[c.Name]
					if !ok {
						continue
					}
					if c.Name != "liveness-probe" && c.Name != "node-driver-registrar" {
						known = slices.Concat(commonSidecarFlags, known)
					}
					for _, f := range argFlags(c.Args) {
						if !slices.Contains(known, f) {
							t.Errorf("%s/%s: flag --%s is not one the sidecar knows", workload, c.Name, f)
						}
					}
				}
			}
		})
	}
}

// driverInfo is what the driver's own sources say it is.
type driverInfo struct {
	controller, node, plugin []string // advertised capabilities
	flags                    []string // flag names the binary defines
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// driverCapabilities reads what the driver advertises from its exported
// lists (pkg/driver/capabilities.go).
func driverCapabilities() *driverInfo {
	info := &driverInfo{}
	for _, c := range driver.ControllerCapabilities {
		info.controller = append(info.controller, c.String())
	}
	for _, c := range driver.NodeCapabilities {
		info.node = append(info.node, c.String())
	}
	for _, c := range driver.PluginServices {
		info.plugin = append(info.plugin, c.String())
	}
	return info
}

// TestChartMatchesDriverCapabilities: the sidecars and features the chart deploys by default
// are exactly those the driver advertises. When the driver gains a capability, this test
// says which default to flip.
func TestChartMatchesDriverCapabilities(t *testing.T) {
	info := driverCapabilities()
	t.Logf("driver advertises controller %v, node %v, plugin %v", info.controller, info.node, info.plugin)

	_, objs := renderDecoded(t, renderCases[0])
	ctrl := podSpecs(objs)["vsphere-csi-controller"]
	has := func(c string) bool { return container(ctrl, c) != nil }
	expect := []struct {
		sidecar, capability string
		advertised          bool
		value               string
	}{
		{"csi-provisioner", "controller CREATE_DELETE_VOLUME", slices.Contains(info.controller, "CREATE_DELETE_VOLUME"), ""},
		{"csi-attacher", "controller PUBLISH_UNPUBLISH_VOLUME", slices.Contains(info.controller, "PUBLISH_UNPUBLISH_VOLUME"), ""},
		{"csi-resizer", "controller EXPAND_VOLUME", slices.Contains(info.controller, "EXPAND_VOLUME"), "volumeExpansion.enabled"},
		{"csi-snapshotter", "controller CREATE_DELETE_SNAPSHOT", slices.Contains(info.controller, "CREATE_DELETE_SNAPSHOT"), "snapshots.enabled"},
	}
	for _, e := range expect {
		if has(e.sidecar) != e.advertised {
			msg := "the chart deploys %s by default, but the driver does not advertise %s"
			if e.advertised {
				msg = "the driver advertises %[2]s, but the chart does not deploy %[1]s by default"
			}
			if e.value != "" {
				msg += " (set " + e.value + " in values.yaml accordingly, then run " + RegenerateCommand + ")"
			}
			t.Errorf(msg, e.sidecar, e.capability)
		}
	}
	// VOLUME_ACCESSIBILITY_CONSTRAINTS depends on the vCenter config's
	// [Labels], which the chart can't see: topology.enabled is the admin's
	// word that zones are configured (TestTopologyEnabled).
	if !slices.Contains(info.controller, "GET_CAPACITY") {
		t.Error("values can enable storageCapacity, but the driver does not advertise GET_CAPACITY")
	}
	if len(info.node) > 0 && !slices.Contains(info.node, "STAGE_UNSTAGE_VOLUME") {
		t.Error("the node DaemonSet mounts kubelet's dir for staging, but the driver has no STAGE_UNSTAGE_VOLUME")
	}
}

// readDriverFlags collects flag names defined in Go files under dirs: the name argument of
// flag-package style calls (fs.String("name", ...), fs.StringVar(&v, "name", ...), ...).
func readDriverFlags(t *testing.T, dirs ...string) []string {
	nameArg := map[string]int{
		"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0, "Duration": 0, "Float64": 0, "Func": 0, "BoolFunc": 0,
		"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1, "Uint64Var": 1, "DurationVar": 1,
		"Float64Var": 1, "Var": 1, "TextVar": 1,
	}
	var flags []string
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			file, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
			if err != nil {
				t.Fatalf("parse %s: %v", p, err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				i, ok := nameArg[sel.Sel.Name]
				if !ok || len(call.Args) <= i {
					return true
				}
				if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && flagName.MatchString("--"+s) {
						flags = appendUnique(flags, s)
					}
				}
				return true
			})
			return nil
		})
	}
	return flags
}

// TestDriverFlagsKnown: every flag the chart gives the driver is one the binary defines.
func TestDriverFlagsKnown(t *testing.T) {
	root := repoRoot(t)
	cmd := filepath.Join(root, "cmd/vsphere-csi")
	if _, err := os.Stat(cmd); err != nil {
		t.Fatal(err)
	}
	flags := readDriverFlags(t, cmd, filepath.Join(root, "pkg"))
	flags = append(flags, "v", "vmodule") // klog.InitFlags
	t.Logf("driver flags: %v", flags)
	for _, rc := range renderCases {
		_, objs := renderDecoded(t, rc)
		for workload, spec := range podSpecs(objs) {
			if c := container(spec, "vsphere-csi"); c != nil {
				for _, f := range argFlags(c.Args) {
					if !slices.Contains(flags, f) {
						t.Errorf("%s: %s/vsphere-csi gets --%s, which cmd/vsphere-csi does not define", rc.name, workload, f)
					}
				}
			}
		}
	}
}
