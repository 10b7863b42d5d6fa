package chart

import (
	"net"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Issue 23, item 7: the node plugin is on the host's network, where a port
// opened on every interface is open on every network the node is on, and
// its metrics and health endpoints answer without authentication. The
// chart binds them to the pod's IP (metrics: where Prometheus scrapes) or
// to 127.0.0.1 (health in a host-network pod: where kubelet, on the host's
// network, probes it), and its liveness probes go where they listen.

// nodeOnPodNetwork: a node plugin in a network of its own (no NFS volumes):
// health then listens on the pod's IP, where kubelet probes by default.
var nodeOnPodNetwork = renderCase{
	name: "node-on-pod-network",
	values: func(*testing.T) map[string]any {
		return map[string]any{"node": map[string]any{"hostNetwork": false}}
	},
	strict: true,
}

// everyInterface: the old behaviour, chosen explicitly.
var everyInterface = renderCase{
	name: "every-interface",
	values: func(*testing.T) map[string]any {
		return map[string]any{
			"metrics":    map[string]any{"bindAddress": "all"},
			"controller": map[string]any{"healthBindAddress": "all"},
			"node":       map[string]any{"healthBindAddress": "all"},
		}
	},
	strict: true,
}

// listener is an address a container listens on, from its flags.
type listener struct {
	container, flag, host, port string
}

// listenFlags are the flags that open a TCP listener, per container.
var listenFlags = map[string][]string{
	"vsphere-csi":    {"--metrics-address", "--healthz-address"},
	"liveness-probe": {"--http-endpoint", "--health-port"},
}

func listeners(t *testing.T, spec *corev1.PodSpec) []listener {
	t.Helper()
	var out []listener
	for _, c := range spec.Containers {
		for _, f := range listenFlags[c.Name] {
			v := argValue(c.Args, f)
			if v == "" {
				continue
			}
			if f == "--health-port" { // livenessprobe listens on 0.0.0.0:<port>
				out = append(out, listener{c.Name, f, "", v})
				continue
			}
			host, port, err := net.SplitHostPort(v)
			if err != nil {
				t.Errorf("%s: %s=%s: %v", c.Name, f, v, err)
				continue
			}
			out = append(out, listener{c.Name, f, host, port})
		}
	}
	return out
}

// hasPodIPEnv says whether a container's POD_IP is the pod's IP.
func hasPodIPEnv(c *corev1.Container) bool {
	for _, e := range c.Env {
		if e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
			return true
		}
	}
	return false
}

func TestEndpointsNotOnEveryInterface(t *testing.T) {
	for _, rc := range []renderCase{renderCases[0], renderCases[1], withoutRegistrarAndProbe, nodeOnPodNetwork, everyInterface} {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			specs := podSpecs(objs)
			for _, workload := range []string{"vsphere-csi-controller", "vsphere-csi-node"} {
				spec := specs[workload]
				if spec == nil {
					t.Fatalf("no %s in %v", workload, specs)
				}
				ls := listeners(t, spec)
				if len(ls) < 2 {
					t.Fatalf("%s: listeners %+v, want metrics and health", workload, ls)
				}
				for _, l := range ls {
					where := workload + "/" + l.container + " " + l.flag
					switch l.host {
					case "$(POD_IP)":
						if !hasPodIPEnv(container(spec, l.container)) {
							t.Errorf("%s listens on $(POD_IP), which the container does not define as status.podIP", where)
						}
					case "127.0.0.1":
						if !spec.HostNetwork && l.flag != "--metrics-address" {
							t.Errorf("%s listens on 127.0.0.1 in a pod with its own network: kubelet can't reach it", where)
						}
					case "", "0.0.0.0", "::":
						if rc.name != everyInterface.name {
							t.Errorf("%s listens on every interface (%q)%s", where, l.host+":"+l.port,
								map[bool]string{true: ": the node's, in a host-network pod", false: ""}[spec.HostNetwork])
						}
					default:
						t.Errorf("%s listens on %s, an address the chart can't know", where, l.host)
					}
				}
				if rc.name == everyInterface.name {
					for _, l := range ls {
						if l.host != "" {
							t.Errorf("%s: bindAddress all, but %s/%s listens on %s", workload, l.container, l.flag, l.host)
						}
					}
				}
				checkProbeReachesHealth(t, workload, spec, ls)
			}
			// What the defaults promise, spelt out: the host-network node
			// plugin's health on 127.0.0.1, metrics on the pod's (the node's) IP.
			if rc.name == "default" {
				node := specs["vsphere-csi-node"]
				if got := argValue(container(node, "liveness-probe").Args, "--http-endpoint"); got != "127.0.0.1:9808" {
					t.Errorf("node liveness-probe --http-endpoint=%q, want 127.0.0.1:9808", got)
				}
				if got := argValue(container(node, "vsphere-csi").Args, "--metrics-address"); got != "[$(POD_IP)]:9809" {
					t.Errorf("node --metrics-address=%q, want [$(POD_IP)]:9809", got)
				}
			}
		})
	}
}

// checkProbeReachesHealth: the driver's liveness probe goes to the address
// /healthz listens on: 127.0.0.1 (host-network pods only) or the pod's IP.
func checkProbeReachesHealth(t *testing.T, workload string, spec *corev1.PodSpec, ls []listener) {
	t.Helper()
	drv := container(spec, "vsphere-csi")
	p := drv.LivenessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: the driver has no HTTP liveness probe on /healthz", workload)
		return
	}
	port := p.HTTPGet.Port.String()
	for _, cp := range drv.Ports {
		if cp.Name == port {
			port = itoa(cp.ContainerPort)
		}
	}
	i := slices.IndexFunc(ls, func(l listener) bool {
		return l.port == port && (l.flag == "--healthz-address" || l.container == "liveness-probe")
	})
	if i < 0 {
		t.Errorf("%s: the liveness probe goes to port %s, where no health endpoint listens (%+v)", workload, port, ls)
		return
	}
	h := ls[i].host
	switch {
	case h == "127.0.0.1" && (p.HTTPGet.Host != "127.0.0.1" || !spec.HostNetwork):
		t.Errorf("%s: health listens on 127.0.0.1 but kubelet probes host %q (hostNetwork %v)", workload, p.HTTPGet.Host, spec.HostNetwork)
	case h != "127.0.0.1" && p.HTTPGet.Host != "":
		t.Errorf("%s: health listens on %q but kubelet probes host %q", workload, h, p.HTTPGet.Host)
	case strings.HasPrefix(h, "$(") && h != "$(POD_IP)":
		t.Errorf("%s: health listens on %s", workload, h)
	}
}

// TestSeccompRuntimeDefault: every container of every pod runs under the
// runtime's default seccomp profile, set on it or inherited from its pod
// (issue 23, item 7: the node pod's sidecars had none).
func TestSeccompRuntimeDefault(t *testing.T) {
	for _, rc := range []renderCase{renderCases[0], renderCases[1], withoutRegistrarAndProbe, nodeOnPodNetwork} {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			for workload, spec := range podSpecs(objs) {
				var pod *corev1.SeccompProfile
				if spec.SecurityContext != nil {
					pod = spec.SecurityContext.SeccompProfile
				}
				for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
					p := pod
					if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
						p = c.SecurityContext.SeccompProfile
					}
					if p == nil || p.Type != corev1.SeccompProfileTypeRuntimeDefault {
						t.Errorf("%s/%s: seccomp profile %+v, want RuntimeDefault (on the container or its pod)", workload, c.Name, p)
					}
				}
			}
		})
	}
}

// TestLocalhostHealthNeedsHostNetwork: kubelet can't reach the loopback of
// a pod's own network, so the chart refuses health on 127.0.0.1 there.
func TestLocalhostHealthNeedsHostNetwork(t *testing.T) {
	vals := map[string]any{"node": map[string]any{"hostNetwork": false, "healthBindAddress": "localhost"}}
	_, err := Render(chartDir(t), vals, DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "node.healthBindAddress localhost needs node.hostNetwork") {
		t.Fatalf("render: %v, want the refusal", err)
	}
}
