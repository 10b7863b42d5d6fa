package chart

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// The chart's helm test runs `vsphere-csi doctor` (docs/DOCTOR.md) with
// the controller's csi-vsphere.conf Secret and a service account that may
// list what the doctor reads and do nothing else; all of it exists only
// as test hooks, which the plain manifests leave out.
func TestHelmTestRunsTheDoctor(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.Strict = rc.strict
			r, err := Render(chartDir(t), rc.values(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			var pod *corev1.Pod
			var role *rbacv1.ClusterRole
			var binding *rbacv1.ClusterRoleBinding
			var sa *corev1.ServiceAccount
			for _, h := range r.Hooks {
				obj, err := DecodeStrict([]byte(h.YAML))
				if err != nil {
					t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", h.Source, h.Kind, h.Name, err, h.YAML)
				}
				switch o := obj.(type) {
				case *corev1.Pod:
					pod = o
				case *rbacv1.ClusterRole:
					role = o
				case *rbacv1.ClusterRoleBinding:
					binding = o
				case *corev1.ServiceAccount:
					sa = o
				}
				for _, o := range r.Objects {
					if o.Kind == h.Kind && o.Name == h.Name {
						t.Errorf("%s %s is both installed and a test hook", h.Kind, h.Name)
					}
				}
			}
			if pod == nil || role == nil || binding == nil || sa == nil {
				t.Fatalf("test hooks: pod %v, cluster role %v, binding %v, service account %v", pod != nil, role != nil, binding != nil, sa != nil)
			}
			for _, o := range []map[string]string{pod.Annotations, role.Annotations, binding.Annotations, sa.Annotations} {
				if o["helm.sh/hook"] != "test" {
					t.Errorf("annotations %v: not a test hook", o)
				}
			}
			if len(pod.Spec.Containers) != 1 || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Fatalf("doctor pod: %d containers, restartPolicy %q", len(pod.Spec.Containers), pod.Spec.RestartPolicy)
			}
			c := pod.Spec.Containers[0]
			if len(c.Args) < 2 || c.Args[0] != "doctor" || !slices.Contains(c.Args, "--config=/etc/vsphere-csi/csi-vsphere.conf") {
				t.Errorf("doctor pod args %v: want doctor --config=/etc/vsphere-csi/csi-vsphere.conf", c.Args)
			}
			controller := podSpecs(mustDecode(t, r))["vsphere-csi-controller"]
			if controller == nil {
				t.Fatal("no controller Deployment")
			}
			if c.Image != controller.Containers[0].Image {
				t.Errorf("doctor image %s, the controller's %s", c.Image, controller.Containers[0].Image)
			}
			var secret string
			for _, v := range pod.Spec.Volumes {
				if v.Secret != nil {
					secret = v.Secret.SecretName
				}
			}
			var ctrlSecret string
			for _, v := range controller.Volumes {
				if v.Secret != nil && v.Name == "vsphere-config" {
					ctrlSecret = v.Secret.SecretName
				}
			}
			if secret == "" || secret != ctrlSecret {
				t.Errorf("doctor mounts Secret %q, the controller %q", secret, ctrlSecret)
			}
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/vsphere-csi" || !c.VolumeMounts[0].ReadOnly {
				t.Errorf("doctor mounts %+v: want the config read-only at /etc/vsphere-csi", c.VolumeMounts)
			}
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation ||
				pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot {
				t.Errorf("doctor pod is not restricted: %+v %+v", pod.Spec.SecurityContext, c.SecurityContext)
			}
			// RBAC: the pod's account, bound to a role that lists exactly what
			// the doctor reads, and nothing that writes.
			if pod.Spec.ServiceAccountName != sa.Name || binding.RoleRef.Name != role.Name ||
				len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
				t.Errorf("pod account %q, service account %s/%s, binding %+v to %s", pod.Spec.ServiceAccountName, sa.Namespace, sa.Name, binding.Subjects, binding.RoleRef.Name)
			}
			listable := map[string]bool{}
			for _, rule := range role.Rules {
				for _, v := range rule.Verbs {
					if v != "list" {
						t.Errorf("rule %+v: verb %s (the doctor only lists)", rule, v)
					}
				}
				for _, g := range rule.APIGroups {
					for _, res := range rule.Resources {
						listable[g+"/"+res] = true
					}
				}
			}
			for _, want := range []string{"/nodes", "/persistentvolumeclaims", "storage.k8s.io/csinodes", "storage.k8s.io/storageclasses"} {
				if !listable[want] {
					t.Errorf("the doctor's role can't list %s", want)
				}
			}
		})
	}
}

func mustDecode(t *testing.T, r *Rendered) []decoded {
	t.Helper()
	var out []decoded
	for _, o := range r.Objects {
		obj, err := DecodeStrict([]byte(o.YAML))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decoded{Object: o, Typed: obj})
	}
	return out
}
