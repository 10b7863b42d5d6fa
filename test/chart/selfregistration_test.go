package chart

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// withoutRegistrarAndProbe: the node plugin registers itself with kubelet
// and the driver serves /healthz itself (sidecars.*.enabled=false).
var withoutRegistrarAndProbe = renderCase{
	name: "no-registrar-no-livenessprobe",
	values: func(*testing.T) map[string]any {
		return map[string]any{"sidecars": map[string]any{
			"nodeDriverRegistrar": map[string]any{"enabled": false},
			"livenessProbe":       map[string]any{"enabled": false},
		}}
	},
	strict: true,
}

// TestSelfRegistrationAndHealthz: with node-driver-registrar and livenessprobe
// disabled, neither container is rendered, the node plugin gets
// --kubelet-registration-path (the socket as kubelet sees it) and kubelet's
// registration dir (which it mounts), both components serve /healthz on the
// port their liveness probe uses, and every such flag is one the driver
// defines. With the defaults the sidecars stay and the driver gets none of it.
func TestSelfRegistrationAndHealthz(t *testing.T) {
	root := repoRoot(t)
	flags := append(readDriverFlags(t, filepath.Join(root, "cmd/vsphere-csi"), filepath.Join(root, "pkg")), "v", "vmodule")
	for _, rc := range []renderCase{renderCases[0], withoutRegistrarAndProbe} {
		t.Run(rc.name, func(t *testing.T) {
			self := rc.name == withoutRegistrarAndProbe.name
			_, objs := renderDecoded(t, rc)
			specs := podSpecs(objs)
			var node, ctrl string
			for name := range specs {
				switch {
				case strings.HasSuffix(name, "-node"):
					node = name
				case strings.HasSuffix(name, "-controller"):
					ctrl = name
				}
			}
			if node == "" || ctrl == "" {
				t.Fatalf("no node DaemonSet or controller Deployment in %v", specs)
			}
			nodeSpec, ctrlSpec := specs[node], specs[ctrl]
			if got := container(nodeSpec, "node-driver-registrar") != nil; got == self {
				t.Errorf("node-driver-registrar rendered: %v, want %v", got, !self)
			}
			for _, spec := range []string{node, ctrl} {
				if got := container(specs[spec], "liveness-probe") != nil; got == self {
					t.Errorf("%s: liveness-probe rendered: %v, want %v", spec, got, !self)
				}
			}
			nodeDriver := container(nodeSpec, "vsphere-csi")
			ctrlDriver := container(ctrlSpec, "vsphere-csi")
			if nodeDriver == nil || ctrlDriver == nil {
				t.Fatal("no vsphere-csi container")
			}
			regPath := argValue(nodeDriver.Args, "--kubelet-registration-path")
			regDir := argValue(nodeDriver.Args, "--plugin-registration-dir")
			if !self {
				if regPath != "" || regDir != "" || argValue(nodeDriver.Args, "--healthz-address") != "" || argValue(ctrlDriver.Args, "--healthz-address") != "" {
					t.Errorf("defaults give the driver self-registration or healthz flags: node %v, controller %v", nodeDriver.Args, ctrlDriver.Args)
				}
				return
			}
			if regPath != "/var/lib/kubelet/plugins/"+DriverName+"/csi.sock" {
				t.Errorf("--kubelet-registration-path=%q, want kubelet's view of the socket /var/lib/kubelet/plugins/%s/csi.sock", regPath, DriverName)
			}
			if regDir != "/var/lib/kubelet/plugins_registry" {
				t.Errorf("--plugin-registration-dir=%q, want /var/lib/kubelet/plugins_registry", regDir)
			}
			mounted := false
			for _, m := range nodeDriver.VolumeMounts {
				if strings.HasPrefix(regDir+"/", strings.TrimSuffix(m.MountPath, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("the node plugin does not mount %s: %+v", regDir, nodeDriver.VolumeMounts)
			}
			for _, c := range []struct {
				name string
				spec string
			}{{"node", node}, {"controller", ctrl}} {
				d := container(specs[c.spec], "vsphere-csi")
				addr := argValue(d.Args, "--healthz-address")
				if addr == "" {
					t.Errorf("%s: no --healthz-address without the livenessprobe sidecar: %v", c.name, d.Args)
					continue
				}
				if d.LivenessProbe == nil || d.LivenessProbe.HTTPGet == nil || d.LivenessProbe.HTTPGet.Path != "/healthz" {
					t.Errorf("%s: no HTTP liveness probe on /healthz", c.name)
					continue
				}
				var port int32
				for _, p := range d.Ports {
					if p.Name == d.LivenessProbe.HTTPGet.Port.String() {
						port = p.ContainerPort
					}
				}
				if port == 0 || !strings.HasSuffix(addr, ":"+itoa(port)) {
					t.Errorf("%s: --healthz-address=%s, but the liveness probe uses port %q (%d)", c.name, addr, d.LivenessProbe.HTTPGet.Port.String(), port)
				}
				for _, f := range argFlags(d.Args) {
					if !slices.Contains(flags, f) {
						t.Errorf("%s: the driver gets --%s, which cmd/vsphere-csi does not define", c.name, f)
					}
				}
			}
			for _, v := range nodeSpec.Volumes {
				if v.Name == "registration-dir" {
					t.Error("registration-dir volume rendered without node-driver-registrar")
				}
			}
		})
	}
}

func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }
