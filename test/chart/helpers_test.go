package chart

import (
	"path/filepath"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// repoRoot is the repository root, found from the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() { rootDir, rootErr = RepoRoot() })
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return rootDir
}

func chartDir(t *testing.T) string { return filepath.Join(repoRoot(t), ChartPath) }

// fullValues are the non-default values of testdata/values-full.yaml.
func fullValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := ReadValuesFile("testdata/values-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// decoded is a rendered object with its typed form.
type decoded struct {
	Object
	Typed runtime.Object
}

// renderCase is one way of rendering the chart that every check runs on.
type renderCase struct {
	name   string
	values func(t *testing.T) map[string]any
	strict bool
}

var renderCases = []renderCase{
	{name: "default", values: func(*testing.T) map[string]any { return nil }, strict: true},
	{name: "full", values: fullValues},
}

// renderDecoded renders a case and decodes every object strictly, failing the test on any
// error.
func renderDecoded(t *testing.T, rc renderCase) (*Rendered, []decoded) {
	t.Helper()
	opts := DefaultOptions()
	opts.Strict = rc.strict
	r, err := Render(chartDir(t), rc.values(t), opts)
	if err != nil {
		t.Fatalf("render %s values: %v", rc.name, err)
	}
	var out []decoded
	for _, o := range r.Objects {
		obj, err := DecodeStrict([]byte(o.YAML))
		if err != nil {
			t.Fatalf("%s: %s %s/%s does not decode strictly: %v\n%s", o.Source, o.Kind, o.Namespace, o.Name, err, o.YAML)
		}
		out = append(out, decoded{Object: o, Typed: obj})
	}
	return r, out
}

// podSpecs returns the pod templates of the workloads, by workload name.
func podSpecs(objs []decoded) map[string]*corev1.PodSpec {
	specs := map[string]*corev1.PodSpec{}
	for _, d := range objs {
		switch w := d.Typed.(type) {
		case *appsv1.Deployment:
			specs[w.Name] = &w.Spec.Template.Spec
		case *appsv1.DaemonSet:
			specs[w.Name] = &w.Spec.Template.Spec
		case *appsv1.StatefulSet:
			specs[w.Name] = &w.Spec.Template.Spec
		case *corev1.Pod:
			specs[w.Name] = &w.Spec
		}
	}
	return specs
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

func containerNames(spec *corev1.PodSpec) []string {
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	return names
}
