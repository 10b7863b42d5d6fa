package chart

import (
	corev1 "k8s.io/api/core/v1"

	"slices"
	"testing"
)

// TestTopologyEnabled: with topology.enabled the provisioner is strict about
// topology and node plugins get csi-vsphere.conf, to learn their zone from
// vSphere tags (without it a node has no zone and strict topology can't
// place its volumes).
func TestTopologyEnabled(t *testing.T) {
	rc := renderCase{name: "topology", strict: true, values: func(*testing.T) map[string]any {
		return map[string]any{"topology": map[string]any{"enabled": true}}
	}}
	_, objs := renderDecoded(t, rc)
	spec := podSpecs(objs)["vsphere-csi-node"]
	if spec == nil {
		t.Fatal("no node DaemonSet")
	}
	drv := container(spec, "vsphere-csi")
	if !slices.Contains(drv.Args, "--config=/etc/vsphere-csi/csi-vsphere.conf") {
		t.Errorf("node driver args %v lack --config", drv.Args)
	}
	mounted := slices.ContainsFunc(drv.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "vsphere-config" && m.ReadOnly })
	if !mounted {
		t.Errorf("node driver does not mount vsphere-config read-only: %v", drv.VolumeMounts)
	}
	if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool {
		return v.Name == "vsphere-config" && v.Secret != nil && v.Secret.SecretName == "vsphere-config-secret"
	}) {
		t.Errorf("node pods lack the vsphere-config Secret volume")
	}
	if ctrl := podSpecs(objs)["vsphere-csi-controller"]; ctrl == nil ||
		!slices.Contains(container(ctrl, "csi-provisioner").Args, "--strict-topology") {
		t.Error("topology.enabled does not give the provisioner --strict-topology")
	}
}
