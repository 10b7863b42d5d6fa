package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// TestPlainManifestsUpToDate fails when deploy/kubernetes drifts from the chart.
func TestPlainManifestsUpToDate(t *testing.T) {
	root := repoRoot(t)
	want, err := PlainManifests(root)
	if err != nil {
		t.Fatal(err)
	}
	drift, err := PlainDrift(filepath.Join(root, PlainPath), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) > 0 {
		t.Errorf("%s is out of date with the chart; run\n\t%s\n%s", PlainPath, RegenerateCommand, strings.Join(drift, "\n"))
	}
}

// kustomization is the part of kustomize's type the repository uses; unknown fields fail.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// readDir decodes every YAML file of dir strictly, checking kustomization.yaml lists files
// that exist.
func readDir(t *testing.T, dir string) map[string][]decoded {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no YAML in %s (%v)", dir, err)
	}
	out := map[string][]decoded{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			var k kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || len(k.Resources) == 0 {
				t.Errorf("%s: %+v", f, k)
			}
			for _, r := range k.Resources {
				if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("%s lists %s: %v", f, r, err)
				}
			}
			continue
		}
		docs, err := SplitDocuments(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, doc := range docs {
			obj, err := DecodeStrict(doc)
			if err != nil {
				t.Errorf("%s: does not decode strictly: %v", f, err)
				continue
			}
			o, err := newObjectFromTyped(doc)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			for _, msg := range validation.IsDNS1123Subdomain(o.Name) {
				t.Errorf("%s: %s %q: %s", f, o.Kind, o.Name, msg)
			}
			out[base] = append(out[base], decoded{Object: o, Typed: obj})
		}
	}
	return out
}

func newObjectFromTyped(doc []byte) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Object{}, err
	}
	return Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, YAML: string(doc)}, nil
}

// TestPlainManifestsDecode: the files kubectl applies decode strictly and are complete.
func TestPlainManifestsDecode(t *testing.T) {
	files := readDir(t, filepath.Join(repoRoot(t), PlainPath))
	if ns := files["namespace.yaml"]; len(ns) != 1 || ns[0].Typed.(*corev1.Namespace).Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Error("namespace.yaml must create the namespace with Pod Security privileged (the node plugin is privileged)")
	}
	for _, d := range files["node.yaml"] {
		if d.Labels()["app.kubernetes.io/managed-by"] != "kubectl" {
			t.Errorf("plain manifests claim to be managed by %q", d.Labels()["app.kubernetes.io/managed-by"])
		}
	}
}

func (d decoded) Labels() map[string]string {
	var m struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	_ = yaml.Unmarshal([]byte(d.YAML), &m)
	return m.Metadata.Labels
}

// TestExamples: the examples are valid as written, and the seed's objects are there with
// the seed's substance.
func TestExamples(t *testing.T) {
	files := readDir(t, filepath.Join(repoRoot(t), ExamplesPath))
	var (
		classes  = map[string]*storagev1.StorageClass{}
		claims   = map[string]*corev1.PersistentVolumeClaim{}
		pods     = map[string]*corev1.Pod{}
		sets     = map[string]*appsv1.StatefulSet{}
		allDecls []decoded
	)
	for _, ds := range files {
		allDecls = append(allDecls, ds...)
		for _, d := range ds {
			switch o := d.Typed.(type) {
			case *storagev1.StorageClass:
				classes[o.Name] = o
			case *corev1.PersistentVolumeClaim:
				claims[o.Name] = o
			case *corev1.Pod:
				pods[o.Name] = o
			case *appsv1.StatefulSet:
				sets[o.Name] = o
			}
		}
	}
	gold := classes["gold-sc"]
	if gold == nil || gold.Provisioner != DriverName || gold.Parameters["storagepolicyname"] != "Gold" ||
		gold.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("the seed's StorageClass gold-sc (Gold, default class) is not as the seed has it: %+v", gold)
	}
	for name, c := range classes {
		for k := range c.Parameters {
			if !slices.Contains([]string{"storagepolicyname", "datastoreurl", "csi.storage.k8s.io/fstype"}, k) {
				t.Errorf("StorageClass %s: parameter %q is not one the driver takes", name, k)
			}
		}
	}
	pvc := claims["persistent-vmdk"]
	if pvc == nil || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "gold-sc" ||
		!slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) ||
		!pvc.Spec.Resources.Requests.Storage().Equal(resource.MustParse("5Gi")) {
		t.Errorf("the seed's claim persistent-vmdk (RWO, 5Gi, gold-sc) is not as the seed has it: %+v", pvc)
	}
	usesClaim := func(claim string) bool {
		for _, p := range pods {
			for _, v := range p.Spec.Volumes {
				if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
					return true
				}
			}
		}
		return false
	}
	if !usesClaim("persistent-vmdk") {
		t.Error("no example pod mounts persistent-vmdk")
	}
	var withTemplates bool
	for _, s := range sets {
		withTemplates = withTemplates || len(s.Spec.VolumeClaimTemplates) > 0
	}
	if !withTemplates {
		t.Error("no StatefulSet with volumeClaimTemplates")
	}
	var block string
	for name, c := range claims {
		if c.Spec.VolumeMode != nil && *c.Spec.VolumeMode == corev1.PersistentVolumeBlock {
			block = name
		}
	}
	if block == "" || !usesClaim(block) {
		t.Errorf("no raw block claim used by a pod (claim %q)", block)
	}
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			if len(c.VolumeDevices) > 0 && len(c.VolumeMounts) > 0 {
				t.Errorf("pod %s mixes devices and mounts", p.Name)
			}
		}
	}
	for name, spec := range podSpecs(allDecls) {
		for _, c := range spec.Containers {
			if problem := checkImagePinned(c.Image); problem != "" {
				t.Errorf("example %s/%s: image %q %s", name, c.Name, c.Image, problem)
			}
		}
	}
}
