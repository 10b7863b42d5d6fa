// Package chart renders the vsphere-csi Helm chart in-process (the Helm v3 library, no helm
// binary), decodes what it renders strictly into Kubernetes API types, and generates the plain
// manifests of deploy/kubernetes from it. The chart tests and cmd/render-manifests use it.
package chart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// DriverName is the CSI driver name every object must agree on.
const DriverName = "csi.vsphere.vmware.com"

// Paths inside the repository.
const (
	ChartPath     = "deploy/helm/vsphere-csi"
	PlainPath     = "deploy/kubernetes"
	ExamplesPath  = "deploy/examples"
	chartMarker   = ChartPath + "/Chart.yaml"
	rootModMarker = "module github.com/vsphere-cns/vsphere-csi\n"
)

// Options are the release settings of one rendering.
type Options struct {
	ReleaseName string
	Namespace   string
	// Service overrides .Release.Service ("Helm"); the plain manifests say "kubectl".
	Service string
	// Strict fails on a template that reads a value which is not set.
	Strict bool
	// APIVersions are the cluster's extra APIs as helm install would find
	// them ("group/version/Kind"), e.g. the snapshot CRDs.
	APIVersions []string
}

// SnapshotClassAPI is the API a cluster has once the snapshot CRDs are in.
const SnapshotClassAPI = "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"

// DefaultOptions is a release named vsphere-csi in the namespace the upstream vSphere CSI
// driver uses, so that clusters switching from it keep their config Secret.
func DefaultOptions() Options {
	return Options{ReleaseName: "vsphere-csi", Namespace: "vmware-system-csi", APIVersions: []string{SnapshotClassAPI}}
}

// Object is one rendered Kubernetes object.
type Object struct {
	Source     string // template, e.g. vsphere-csi/templates/controller.yaml
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	YAML       string
}

// Rendered is the outcome of rendering the chart.
type Rendered struct {
	Objects []Object // in Helm's install order
	// Hooks are the objects only `helm test` makes (helm.sh/hook: test):
	// the plain manifests leave them out.
	Hooks []Object
	Notes string // NOTES.txt
}

// RepoRoot finds the repository root from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, chartMarker)); err == nil {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), rootModMarker) {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (with " + chartMarker + ") not found above the working directory")
		}
		dir = parent
	}
}

// ReadValuesFile reads a YAML values file.
func ReadValuesFile(path string) (map[string]any, error) {
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		return nil, err
	}
	return v.AsMap(), nil
}

// Render renders the chart at chartDir with the given value overrides (nil: the defaults),
// validating them against values.schema.json as helm install does.
func Render(chartDir string, overrides map[string]any, opts Options) (*Rendered, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	if overrides == nil {
		overrides = map[string]any{}
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(caps.APIVersions, opts.APIVersions...)
	vals, err := chartutil.ToRenderValues(chrt, overrides, chartutil.ReleaseOptions{
		Name: opts.ReleaseName, Namespace: opts.Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	if opts.Service != "" {
		vals["Release"].(map[string]any)["Service"] = opts.Service
	}
	files, err := engine.Engine{Strict: opts.Strict}.Render(chrt, vals)
	if err != nil {
		return nil, err
	}
	out := &Rendered{}
	for name, content := range files {
		if strings.HasSuffix(name, "/NOTES.txt") {
			out.Notes = content
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	for _, h := range hooks {
		for _, ev := range h.Events {
			if ev != release.HookTest {
				return nil, fmt.Errorf("%s: a %s hook; the plain manifests cannot express it (only test hooks, which they leave out)", h.Path, ev)
			}
		}
		obj, err := newObject(releaseutil.Manifest{Name: h.Path, Content: h.Manifest})
		if err != nil {
			return nil, err
		}
		out.Hooks = append(out.Hooks, obj)
	}
	for _, m := range manifests {
		obj, err := newObject(m)
		if err != nil {
			return nil, err
		}
		out.Objects = append(out.Objects, obj)
	}
	return out, nil
}

func newObject(m releaseutil.Manifest) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(m.Content), &head); err != nil {
		return Object{}, fmt.Errorf("%s: %w", m.Name, err)
	}
	if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
		return Object{}, fmt.Errorf("%s: a document without apiVersion, kind or metadata.name:\n%s", m.Name, m.Content)
	}
	return Object{
		Source: m.Name, APIVersion: head.APIVersion, Kind: head.Kind,
		Name: head.Metadata.Name, Namespace: head.Metadata.Namespace,
		YAML: strings.TrimSpace(m.Content) + "\n",
	}, nil
}

// Find returns the rendered objects of a kind, by name.
func (r *Rendered) Find(kind string) map[string]Object {
	found := map[string]Object{}
	for _, o := range r.Objects {
		if o.Kind == kind {
			found[o.Name] = o
		}
	}
	return found
}
