package chart

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// RegenerateCommand is how deploy/kubernetes is brought up to date.
const RegenerateCommand = "cd test/chart && go run ./cmd/render-manifests"

const plainHeader = `# Generated from the Helm chart deploy/helm/vsphere-csi with its default values by
#   ` + RegenerateCommand + `
# Do not edit: change the chart, then regenerate.
`

// namespaceYAML is the one object the plain manifests add to the chart's: helm install
// --create-namespace makes it there. The node plugin is privileged, so Pod Security
// admission must allow privileged pods in it.
func namespaceYAML(ns string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
  labels:
    app.kubernetes.io/part-of: vsphere-csi
    pod-security.kubernetes.io/enforce: privileged
    pod-security.kubernetes.io/audit: privileged
    pod-security.kubernetes.io/warn: privileged
`, ns)
}

// PlainManifests renders the chart with its default values into the files of
// deploy/kubernetes: one file per chart template, a namespace, and a kustomization.
func PlainManifests(root string) (map[string][]byte, error) {
	opts := DefaultOptions()
	opts.Service = "kubectl"
	opts.Strict = true
	// Plain manifests must apply on a cluster without the snapshot CRDs:
	// deploy/examples/snapshot.yaml carries a VolumeSnapshotClass.
	opts.APIVersions = nil
	r, err := Render(filepath.Join(root, ChartPath), nil, opts)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	order := []string{"namespace.yaml"}
	files["namespace.yaml"] = []byte(plainHeader + "---\n" + namespaceYAML(opts.Namespace))
	docs := map[string][]string{}
	for _, o := range r.Objects {
		name := path.Base(o.Source)
		if _, seen := docs[name]; !seen {
			order = append(order, name)
		}
		docs[name] = append(docs[name], o.YAML)
	}
	for name, d := range docs {
		files[name] = []byte(plainHeader + "---\n" + strings.Join(d, "---\n"))
	}
	var k strings.Builder
	k.WriteString(plainHeader)
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	for _, name := range order {
		k.WriteString("  - " + name + "\n")
	}
	files["kustomization.yaml"] = []byte(k.String())
	return files, nil
}

// WritePlainManifests replaces the YAML files of dir with files.
func WritePlainManifests(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// PlainDrift compares dir with the files it should hold; it returns what differs.
func PlainDrift(dir string, want map[string][]byte) ([]string, error) {
	var drift []string
	have, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range have {
		if _, ok := want[filepath.Base(f)]; !ok {
			drift = append(drift, filepath.Base(f)+": not rendered from the chart any more")
		}
	}
	for name, content := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case os.IsNotExist(err):
			drift = append(drift, name+": missing")
		case err != nil:
			return nil, err
		case string(got) != string(content):
			drift = append(drift, name+": differs from the chart's rendering")
		}
	}
	sort.Strings(drift)
	return drift, nil
}
