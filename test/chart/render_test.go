package chart

import (
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"gopkg.in/ini.v1"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// TestHelmLint is `helm lint` with the default and the non-default values.
func TestHelmLint(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			l := lint.AllWithKubeVersionAndSchemaValidation(chartDir(t), rc.values(t), DefaultOptions().Namespace, nil, false)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m.Error())
				} else {
					t.Logf("helm lint: %s", m.Error())
				}
			}
		})
	}
}

// TestRenderDecodesStrictly renders both value sets and decodes every object into its API
// type with unknown fields rejected (renderDecoded fails on any of them).
func TestRenderDecodesStrictly(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			kinds := map[string]int{}
			for _, d := range objs {
				kinds[d.Kind]++
				if d.Namespace != "" && d.Namespace != DefaultOptions().Namespace {
					t.Errorf("%s %s is in namespace %q, not the release's", d.Kind, d.Name, d.Namespace)
				}
			}
			for _, k := range []string{"CSIDriver", "Deployment", "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "StorageClass", "PodDisruptionBudget"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered", k)
				}
			}
			t.Logf("%d objects: %v", len(objs), kinds)
		})
	}
}

func TestCSIDriver(t *testing.T) {
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			_, objs := renderDecoded(t, rc)
			var drivers []*storagev1.CSIDriver
			for _, d := range objs {
				if c, ok := d.Typed.(*storagev1.CSIDriver); ok {
					drivers = append(drivers, c)
				}
			}
			if len(drivers) != 1 {
				t.Fatalf("%d CSIDrivers rendered, want 1", len(drivers))
			}
			c := drivers[0]
			if c.Name != DriverName {
				t.Errorf("CSIDriver name %q, want %q", c.Name, DriverName)
			}
			s := c.Spec
			if s.AttachRequired == nil || !*s.AttachRequired {
				t.Error("attachRequired must be true")
			}
			if s.PodInfoOnMount == nil || *s.PodInfoOnMount {
				t.Error("podInfoOnMount must be false")
			}
			// kubelet's recursive chown must not walk ReadWriteMany shares (over NFS, every
			// file on every mount): Kubernetes' default policy, unless the values ask otherwise.
			wantPolicy := storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy
			if rc.name == "full" {
				wantPolicy = storagev1.FileFSGroupPolicy
			}
			if s.FSGroupPolicy == nil || *s.FSGroupPolicy != wantPolicy {
				t.Errorf("fsGroupPolicy %v, want %s", ptrString(s.FSGroupPolicy), wantPolicy)
			}
			if !slices.Equal(s.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}) {
				t.Errorf("volumeLifecycleModes %v, want [Persistent]", s.VolumeLifecycleModes)
			}
			wantCapacity := rc.name == "full"
			if s.StorageCapacity == nil || *s.StorageCapacity != wantCapacity {
				t.Errorf("storageCapacity %v, want %v", s.StorageCapacity, wantCapacity)
			}
		})
	}
}

func TestStorageClasses(t *testing.T) {
	_, objs := renderDecoded(t, renderCases[0])
	classes := map[string]*storagev1.StorageClass{}
	for _, d := range objs {
		if sc, ok := d.Typed.(*storagev1.StorageClass); ok {
			classes[sc.Name] = sc
		}
	}
	gold := classes["gold-sc"]
	if gold == nil {
		t.Fatalf("default values render no gold-sc (got %v)", classes)
	}
	if gold.Provisioner != DriverName || gold.Parameters["storagepolicyname"] != "Gold" {
		t.Errorf("gold-sc: provisioner %q parameters %v", gold.Provisioner, gold.Parameters)
	}
	if _, isDefault := gold.Annotations["storageclass.kubernetes.io/is-default-class"]; isDefault {
		t.Error("gold-sc is the default class by default; it must be opt-in")
	}
	if gold.AllowVolumeExpansion == nil || !*gold.AllowVolumeExpansion {
		t.Error("allowVolumeExpansion must follow volumeExpansion.enabled (true by default)")
	}

	_, objs = renderDecoded(t, renderCases[1])
	classes = map[string]*storagev1.StorageClass{}
	for _, d := range objs {
		if sc, ok := d.Typed.(*storagev1.StorageClass); ok {
			classes[sc.Name] = sc
		}
	}
	if classes["gold-sc"].Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Error("full values: gold-sc is not the default class")
	}
	silver := classes["silver-xfs"]
	if silver == nil {
		t.Fatal("full values: no silver-xfs")
	}
	wantParams := map[string]string{
		"storagepolicyname":         "Silver",
		"datastoreurl":              "ds:///vmfs/volumes/5f1d2c3b-aa11bb22-cc33-001122334455/",
		"csi.storage.k8s.io/fstype": "xfs",
	}
	for k, v := range wantParams {
		if silver.Parameters[k] != v {
			t.Errorf("silver-xfs parameter %s = %q, want %q", k, silver.Parameters[k], v)
		}
	}
	if *silver.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || *silver.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("silver-xfs: reclaim %v binding %v", *silver.ReclaimPolicy, *silver.VolumeBindingMode)
	}
	if len(silver.AllowedTopologies) != 1 || !slices.Equal(silver.MountOptions, []string{"noatime"}) {
		t.Errorf("silver-xfs: topologies %v mount options %v", silver.AllowedTopologies, silver.MountOptions)
	}
}

// TestNoSnapshotClassWithoutCRDs: on a cluster without the snapshot CRDs
// the chart still installs (csi-snapshotter waits for them), without the
// VolumeSnapshotClass that would fail the install.
func TestNoSnapshotClassWithoutCRDs(t *testing.T) {
	opts := DefaultOptions()
	opts.APIVersions = nil
	r, err := Render(chartDir(t), nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	snapshotter := false
	for _, o := range r.Objects {
		if o.Kind == "VolumeSnapshotClass" {
			t.Errorf("VolumeSnapshotClass %s rendered for a cluster without the snapshot CRDs", o.Name)
		}
		snapshotter = snapshotter || strings.Contains(o.YAML, "csi-snapshotter")
	}
	if !snapshotter {
		t.Error("csi-snapshotter is not deployed")
	}
}

func TestVolumeSnapshotClasses(t *testing.T) {
	off := renderCase{name: "snapshots off", values: func(*testing.T) map[string]any {
		return map[string]any{"snapshots": map[string]any{"enabled": false}}
	}}
	_, objs := renderDecoded(t, off)
	for _, d := range objs {
		if d.Kind == "VolumeSnapshotClass" || d.Name == "vsphere-csi-external-snapshotter" {
			t.Errorf("snapshots are off, yet %s %s is rendered", d.Kind, d.Name)
		}
	}
	_, objs = renderDecoded(t, renderCases[0])
	var defaults []string
	for _, d := range objs {
		if c, ok := d.Typed.(*snapshotv1.VolumeSnapshotClass); ok {
			defaults = append(defaults, c.Name)
			if c.Driver != DriverName || c.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
				t.Errorf("default %s: %+v", c.Name, c)
			}
		}
	}
	if !slices.Equal(defaults, []string{"vsphere-snapshot"}) {
		t.Errorf("default values render snapshot classes %v, want [vsphere-snapshot]", defaults)
	}
	_, objs = renderDecoded(t, renderCases[1])
	classes := map[string]*snapshotv1.VolumeSnapshotClass{}
	for _, d := range objs {
		if c, ok := d.Typed.(*snapshotv1.VolumeSnapshotClass); ok {
			classes[c.Name] = c
		}
	}
	c := classes["vsphere-snapshot"]
	if len(classes) != 2 || c == nil {
		t.Fatalf("full values: snapshot classes %v", classes)
	}
	if c.Driver != DriverName || c.DeletionPolicy != snapshotv1.VolumeSnapshotContentRetain ||
		c.Annotations["snapshot.storage.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("vsphere-snapshot: %+v", c)
	}
	if d := classes["vsphere-snapshot-delete"]; d == nil || d.DeletionPolicy != snapshotv1.VolumeSnapshotContentDelete {
		t.Errorf("vsphere-snapshot-delete: %+v", d)
	}
}

// TestConfigSecret: no Secret by default (the admin's own one is used); from values, a
// csi-vsphere.conf that gopkg.in/ini reads back exactly.
func TestConfigSecret(t *testing.T) {
	_, objs := renderDecoded(t, renderCases[0])
	for _, d := range objs {
		if d.Kind == "Secret" {
			t.Errorf("default values render Secret %s: credentials must not be invented", d.Name)
		}
	}
	_, objs = renderDecoded(t, renderCases[1])
	var secret *corev1.Secret
	for _, d := range objs {
		if s, ok := d.Typed.(*corev1.Secret); ok {
			secret = s
		}
	}
	if secret == nil || secret.Name != "vcenter-conf" {
		t.Fatalf("full values: Secret %v, want vcenter-conf", secret)
	}
	conf, ok := secret.StringData["csi-vsphere.conf"]
	if !ok {
		t.Fatalf("Secret has no csi-vsphere.conf: %v", secret.StringData)
	}
	f, err := ini.Load([]byte(conf))
	if err != nil {
		t.Fatalf("csi-vsphere.conf does not parse: %v\n%s", err, conf)
	}
	check := func(section, key, want string) {
		t.Helper()
		if got := f.Section(section).Key(key).String(); got != want {
			t.Errorf("[%s] %s = %q, want %q\n%s", section, key, got, want, conf)
		}
	}
	check("Global", "cluster-id", "prod-cluster-1")
	check(`VirtualCenter "vc1.example.com"`, "user", "k8s-csi@vsphere.local")
	check(`VirtualCenter "vc1.example.com"`, "password", `p4ss"w0rd with spaces`)
	check(`VirtualCenter "vc1.example.com"`, "port", "8443")
	check(`VirtualCenter "vc1.example.com"`, "datacenters", "dc-east, dc-west")
	check(`VirtualCenter "vc1.example.com"`, "insecure-flag", "false")
	check(`VirtualCenter "vc1.example.com"`, "thumbprint", "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01")
	check(`VirtualCenter "vc2.example.com"`, "port", "443")
	check(`VirtualCenter "vc2.example.com"`, "insecure-flag", "true")
}

// TestValuesRejected: values that would install something broken fail at render time, with
// a message that names the fix.
func TestValuesRejected(t *testing.T) {
	cases := []struct {
		name   string
		values string
		want   string
	}{
		{"misspelt key", "controler: {replicas: 3}", "controler"},
		{"latest driver tag", "image: {tag: latest}", "tag"},
		{"latest sidecar tag", "sidecars: {attacher: {image: {repository: registry.k8s.io/sig-storage/csi-attacher, tag: latest}}}", "tag"},
		{"sidecar without tag", "sidecars: {attacher: {image: {repository: registry.k8s.io/sig-storage/csi-attacher, tag: ''}}}", "tag"},
		{"unknown log format", "logFormat: yaml", "logFormat"},
		{"capacity without topology", "storageCapacity: {enabled: true}\ntopology: {enabled: false}", "topology.enabled"},
		{"two default classes", "storageClasses: [{name: a, default: true}, {name: b, default: true}]", "at most one"},
		{"invalid class name", "storageClasses: [{name: Gold_SC}]", "name"},
		{"config without vCenter", "config: {create: true, secretName: x}", "clusterID"},
		{"kubelet dir with trailing slash", "node: {kubeletDir: /var/lib/kubelet/}", "kubeletDir"},
		{"fsType unknown", "storageClasses: [{name: a, fsType: ntfs}]", "fsType"},
		{"fsGroupPolicy unknown", "fsGroupPolicy: ReadWriteMany", "fsGroupPolicy"},
		{"zero replicas", "controller: {replicas: 0}", "replicas"},
		{"host network port clash", "controller: {hostNetwork: true}\nnode: {hostNetwork: true}", "healthPort"},
		{"host network metrics clash", "controller: {hostNetwork: true, healthPort: 9000}\nnode: {hostNetwork: true}", "metrics.controllerPort"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vals := map[string]any{}
			if err := yamlUnmarshal(c.values, &vals); err != nil {
				t.Fatal(err)
			}
			_, err := Render(chartDir(t), vals, DefaultOptions())
			if err == nil {
				t.Fatalf("values %q rendered; want an error", c.values)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestNotes(t *testing.T) {
	r, _ := renderDecoded(t, renderCases[0])
	for _, want := range []string{"create secret generic vsphere-config-secret", "--from-file=csi-vsphere.conf", "disk.EnableUUID", "gold-sc", "persistent-vmdk", "rollout status"} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES.txt does not mention %q:\n%s", want, r.Notes)
		}
	}
	r, _ = renderDecoded(t, renderCases[1])
	for _, want := range []string{"created the Secret vcenter-conf", "snapshot-controller"} {
		if !strings.Contains(r.Notes, want) {
			t.Errorf("NOTES.txt (full values) does not mention %q:\n%s", want, r.Notes)
		}
	}
}

// TestDecodeStrictRejects: the strict decoder is strict.
func TestDecodeStrictRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequired: true, attachRequire: true}\n",
		"duplicate field": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":    "apiVersion: storage.k8s.io/v1\nkind: CSIDrivers\nmetadata: {name: x}\n",
		"wrong type":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n",
		"snapshot field":  "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {name: x}\ndriver: d\ndeletionPolicy: Delete\nparameter: {}\n",
	} {
		if _, err := DecodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// ptrString shows a pointer to a string kind, or <nil>.
func ptrString[T ~string](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return string(*p)
}
