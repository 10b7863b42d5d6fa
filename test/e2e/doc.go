// Package e2e tests the driver through a real Kubernetes API server,
// controller-manager, scheduler and kubelet with containerd, the real CSI
// sidecars and the embedded vCenter, all started by hack/e2e.sh (make e2e).
package e2e
