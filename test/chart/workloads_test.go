package chart

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func yamlUnmarshal(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }

// controllerSidecars are the containers of the controller pod that talk to the API server
// and must elect a leader.
var controllerSidecars = []string{"csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"}

func TestControllerDeployment(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			var dep *appsv1.Deployment
			for _, d := range objs {
				if x, ok := d.Typed.(*appsv1.Deployment); ok {
					dep = x
				}
			}
			if dep == nil {
				t.Fatal("no controller Deployment")
			}
			spec := &dep.Spec.Template.Spec
			full := rc.name == "full"
			wantReplicas := int32(2)
			if full {
				wantReplicas = 3
			}
			if *dep.Spec.Replicas != wantReplicas {
				t.Errorf("replicas %d, want %d", *dep.Spec.Replicas, wantReplicas)
			}
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Error("the controller must run as non-root")
			}
			wantContainers := []string{"vsphere-csi", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "liveness-probe"}
			if got := containerNames(spec); !slices.Equal(got, wantContainers) {
				t.Errorf("containers %v, want %v", got, wantContainers)
			}
			for _, c := range spec.Containers {
				if c.SecurityContext == nil || c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
					t.Errorf("%s: privileged or no securityContext", c.Name)
				}
				if slices.Contains(controllerSidecars, c.Name) {
					if !slices.Contains(c.Args, "--leader-election") {
						t.Errorf("%s: no --leader-election (replicas > 1 would fight)", c.Name)
					}
					if !slices.Contains(c.Args, "--csi-address=/csi/csi.sock") {
						t.Errorf("%s: not pointed at the driver's socket: %v", c.Name, c.Args)
					}
					// controller.leaderElection.releaseOnExit: on in the full values only.
					if got := slices.Contains(c.Args, "--feature-gates=ReleaseLeaderElectionOnExit=true"); got != full {
						t.Errorf("%s: ReleaseLeaderElectionOnExit gate given %v, want %v: %v", c.Name, got, full, c.Args)
					}
				}
			}
			drv := container(spec, "vsphere-csi")
			for _, a := range []string{"--mode=controller", "--endpoint=unix:///csi/csi.sock", "--config=/etc/vsphere-csi/csi-vsphere.conf"} {
				if !slices.Contains(drv.Args, a) {
					t.Errorf("driver args %v lack %s", drv.Args, a)
				}
			}
			prov := container(spec, "csi-provisioner")
			for _, a := range []string{"--extra-create-metadata", "--default-fstype=ext4"} {
				if !slices.Contains(prov.Args, a) {
					t.Errorf("csi-provisioner args %v lack %s", prov.Args, a)
				}
			}
			if slices.Contains(prov.Args, "--strict-topology") != full { // topology.enabled only in the full values
				t.Errorf("csi-provisioner args %v: --strict-topology present=%v, want %v", prov.Args, !full, full)
			}
			capacity := []string{"--enable-capacity", "--capacity-ownerref-level=2", "--capacity-poll-interval=2m"}
			for _, a := range capacity {
				if slices.Contains(prov.Args, a) != full {
					t.Errorf("csi-provisioner: %s present=%v, want %v", a, !full, full)
				}
			}
			if full && len(prov.Env) != 2 {
				t.Errorf("capacity tracking needs NAMESPACE and POD_NAME, env is %v", prov.Env)
			}
			var cfg *corev1.Volume
			for i := range spec.Volumes {
				if spec.Volumes[i].Name == "vsphere-config" {
					cfg = &spec.Volumes[i]
				}
			}
			wantSecret := "vsphere-config-secret"
			if full {
				wantSecret = "vcenter-conf"
				// Issue 11, finding 8: no hash of the config (and so of the
				// password) in the pod's annotations; the controller re-reads
				// the mounted Secret itself.
				for k, v := range dep.Spec.Template.Annotations {
					if strings.Contains(k, "checksum") || len(v) == 64 {
						t.Errorf("annotation %s=%s looks like a hash of the config, password included", k, v)
					}
				}
			}
			if cfg == nil || cfg.Secret == nil || cfg.Secret.SecretName != wantSecret {
				t.Errorf("config volume %+v, want Secret %s", cfg, wantSecret)
			}
			if full {
				if !slices.Contains(drv.Args, "--log-format=json") || !slices.Contains(drv.Args, "--metrics-address=[$(POD_IP)]:9910") {
					t.Errorf("full values: driver args %v", drv.Args)
				}
				if !spec.HostNetwork || !slices.Contains(container(spec, "liveness-probe").Args, "--http-endpoint=127.0.0.1:9900") || drv.Ports[0].ContainerPort != 9900 {
					t.Errorf("full values: hostNetwork %v, health port not 9900", spec.HostNetwork)
				}
				if spec.PriorityClassName != "storage-critical" || spec.Affinity.NodeAffinity == nil || len(spec.ImagePullSecrets) != 1 {
					t.Error("full values: priorityClassName, affinity or imagePullSecrets not applied")
				}
			} else if !slices.Contains(drv.Args, "--metrics-address=[$(POD_IP)]:9809") {
				t.Errorf("default: driver args %v lack --metrics-address=[$(POD_IP)]:9809", drv.Args)
			}
		})
	}
}

func TestNodeDaemonSet(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			var ds *appsv1.DaemonSet
			for _, d := range objs {
				if x, ok := d.Typed.(*appsv1.DaemonSet); ok {
					ds = x
				}
			}
			if ds == nil {
				t.Fatal("no node DaemonSet")
			}
			spec := &ds.Spec.Template.Spec
			kubeletDir := "/var/lib/kubelet"
			if rc.name == "full" {
				kubeletDir = "/var/lib/k0s/kubelet"
			}
			// NFS mounts belong to the network namespace that made them
			// (upstream #1216): the node plugin's is the host's.
			if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("hostNetwork %v, dnsPolicy %q: the node plugin mounts NFS and must run in the host's network", spec.HostNetwork, spec.DNSPolicy)
			}
			if want := []string{"node-driver-registrar", "vsphere-csi", "liveness-probe"}; !slices.Equal(containerNames(spec), want) {
				t.Errorf("containers %v, want %v", containerNames(spec), want)
			}
			hostPaths := map[string]string{}
			for _, v := range spec.Volumes {
				if v.HostPath != nil {
					hostPaths[v.Name] = v.HostPath.Path
				}
			}
			pluginDir := kubeletDir + "/plugins/" + DriverName
			want := map[string]string{
				"kubelet-dir":      kubeletDir,
				"plugin-dir":       pluginDir,
				"registration-dir": kubeletDir + "/plugins_registry",
				"device-dir":       "/dev",
				"sys-dir":          "/sys",
			}
			for name, p := range want {
				if hostPaths[name] != p {
					t.Errorf("hostPath volume %s = %q, want %q", name, hostPaths[name], p)
				}
			}
			reg := container(spec, "node-driver-registrar")
			if !slices.Contains(reg.Args, "--kubelet-registration-path="+pluginDir+"/csi.sock") {
				t.Errorf("registrar args %v: wrong kubelet registration path", reg.Args)
			}
			drv := container(spec, "vsphere-csi")
			if sc := drv.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
				t.Error("the node driver must be privileged")
			}
			mounts := map[string]corev1.VolumeMount{}
			for _, m := range drv.VolumeMounts {
				mounts[m.Name] = m
			}
			if m := mounts["kubelet-dir"]; m.MountPath != kubeletDir || m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationBidirectional {
				t.Errorf("kubelet dir mount %+v: want %s with Bidirectional propagation", m, kubeletDir)
			}
			for _, name := range []string{"device-dir", "sys-dir", "plugin-dir"} {
				if _, ok := mounts[name]; !ok {
					t.Errorf("the node driver does not mount %s", name)
				}
			}
			// vCenter credentials reach the nodes only with topology (the
			// full values), for the node's zone lookup.
			if _, ok := mounts["vsphere-config"]; ok != (rc.name == "full") {
				t.Errorf("node plugin mounts vCenter credentials: %v, want %v (only with topology.enabled)", ok, rc.name == "full")
			}
			if !slices.Contains(drv.Args, "--mode=node") {
				t.Errorf("driver args %v lack --mode=node", drv.Args)
			}
			if rc.name == "full" {
				if !slices.Contains(drv.Args, "--metrics-address=[$(POD_IP)]:9911") || !slices.Contains(container(spec, "liveness-probe").Args, "--http-endpoint=127.0.0.1:9901") {
					t.Errorf("full values: node ports not applied: %v", drv.Args)
				}
				if !slices.Contains(drv.Args, "--max-volumes-per-node=30") || ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
					t.Errorf("full values: args %v strategy %v", drv.Args, ds.Spec.UpdateStrategy.Type)
				}
				if spec.PriorityClassName != "" || len(spec.Tolerations) != 0 {
					t.Errorf("full values: priorityClassName %q tolerations %v", spec.PriorityClassName, spec.Tolerations)
				}
			} else if spec.PriorityClassName != "system-node-critical" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
				t.Errorf("default: the node plugin must run everywhere at node-critical priority")
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("the node plugin needs no API token")
			}
		})
	}
}
