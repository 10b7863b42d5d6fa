package chart

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// imageRef is repository:tag with an optional @sha256 digest; the tag is mandatory.
var imageRef = regexp.MustCompile(`^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9._/-]+:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(@sha256:[a-f0-9]{64})?$`)

// checkImagePinned reports an image without a tag, or tagged latest.
func checkImagePinned(image string) string {
	m := imageRef.FindStringSubmatch(image)
	switch {
	case m == nil:
		return "is not repository:tag (a pinned tag is required)"
	case m[3] == "latest":
		return "is :latest"
	}
	return ""
}

func TestImagesPinned(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			for name, spec := range podSpecs(objs) {
				for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
					if problem := checkImagePinned(c.Image); problem != "" {
						t.Errorf("%s/%s: image %q %s", name, c.Name, c.Image, problem)
					}
				}
			}
		})
	}
	for _, bad := range []string{"busybox", "registry.k8s.io/x:latest", "x@sha256:" + strings.Repeat("a", 64)} {
		if checkImagePinned(bad) == "" {
			t.Errorf("checkImagePinned accepts %q", bad)
		}
	}
}

// TestRBACLeastPrivilege: no wildcards, no Secrets, no privilege escalation verbs, and every
// binding points at a rendered role and service account; the controller's own role only reads.
func TestRBACLeastPrivilege(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			roles := map[string]bool{}
			accounts := map[string]bool{}
			var bindings []struct {
				name     string
				ref      rbacv1.RoleRef
				subjects []rbacv1.Subject
			}
			checkRules := func(kind, name string, rules []rbacv1.PolicyRule) {
				for _, r := range rules {
					for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
						if slices.Contains(field, "*") {
							t.Errorf("%s %s: wildcard in rule %+v", kind, name, r)
						}
					}
					if len(r.NonResourceURLs) > 0 {
						t.Errorf("%s %s: non-resource URLs %v", kind, name, r.NonResourceURLs)
					}
					if slices.Contains(r.Resources, "secrets") {
						t.Errorf("%s %s: Secret access; the config Secret is mounted, never read through the API", kind, name)
					}
					for _, v := range []string{"escalate", "bind", "impersonate"} {
						if slices.Contains(r.Verbs, v) {
							t.Errorf("%s %s: verb %s", kind, name, v)
						}
					}
				}
			}
			for _, d := range objs {
				switch o := d.Typed.(type) {
				case *rbacv1.ClusterRole:
					roles["ClusterRole/"+o.Name] = true
					checkRules("ClusterRole", o.Name, o.Rules)
					if strings.HasSuffix(o.Name, "-controller") {
						for _, r := range o.Rules {
							for _, v := range r.Verbs {
								if v != "get" && v != "list" && v != "watch" {
									t.Errorf("ClusterRole %s: verb %s on %v; the controller only reads", o.Name, v, r.Resources)
								}
							}
						}
					}
					if strings.HasSuffix(o.Name, "-controller-events") {
						for _, r := range o.Rules {
							if !slices.Equal(r.Resources, []string{"events"}) || !slices.Equal(r.Verbs, []string{"create", "patch"}) {
								t.Errorf("ClusterRole %s: rule %+v; the syncer only records events", o.Name, r)
							}
						}
					}
					if o.AggregationRule != nil {
						t.Errorf("ClusterRole %s aggregates", o.Name)
					}
				case *rbacv1.Role:
					roles["Role/"+o.Name] = true
					checkRules("Role", o.Name, o.Rules)
					if strings.HasSuffix(o.Name, "-controller-lease") {
						for _, r := range o.Rules {
							if !slices.Equal(r.Resources, []string{"leases"}) || len(r.ResourceNames) > 0 && !slices.Equal(r.ResourceNames, []string{"vsphere-csi-syncer"}) {
								t.Errorf("Role %s: rule %+v; the syncer only holds its Lease", o.Name, r)
							}
						}
					}
				case *rbacv1.ClusterRoleBinding:
					bindings = append(bindings, struct {
						name     string
						ref      rbacv1.RoleRef
						subjects []rbacv1.Subject
					}{o.Name, o.RoleRef, o.Subjects})
				case *rbacv1.RoleBinding:
					bindings = append(bindings, struct {
						name     string
						ref      rbacv1.RoleRef
						subjects []rbacv1.Subject
					}{o.Name, o.RoleRef, o.Subjects})
				case *corev1.ServiceAccount:
					accounts[o.Name] = true
				}
			}
			for _, b := range bindings {
				if !roles[b.ref.Kind+"/"+b.ref.Name] {
					t.Errorf("binding %s refers to %s %s, which is not rendered", b.name, b.ref.Kind, b.ref.Name)
				}
				for _, s := range b.subjects {
					if s.Kind != "ServiceAccount" || !accounts[s.Name] || s.Namespace != DefaultOptions().Namespace {
						t.Errorf("binding %s: subject %+v is not one of the release's service accounts", b.name, s)
					}
					if strings.HasSuffix(s.Name, "-node") {
						t.Errorf("binding %s gives the node plugin API access it does not need", b.name)
					}
				}
			}
			// One ClusterRole per deployed sidecar and one for the
			// controller itself (read-only), and one for the metadata
			// syncer's events, nothing shared.
			want := []string{"ClusterRole/vsphere-csi-external-provisioner", "ClusterRole/vsphere-csi-external-attacher",
				"ClusterRole/vsphere-csi-external-resizer", "ClusterRole/vsphere-csi-external-snapshotter",
				"ClusterRole/vsphere-csi-controller", "ClusterRole/vsphere-csi-controller-events"}
			var got []string
			for r := range roles {
				if strings.HasPrefix(r, "ClusterRole/") {
					got = append(got, r)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("ClusterRoles %v, want %v", got, want)
			}
		})
	}
}
