// Package e2e tests the driver through a real Kubernetes API server,
// controller-manager, scheduler and kubelet with containerd, the real CSI
// sidecars and the embedded vCenter, all started by hack/e2e.sh (make e2e).
//
// A test that only makes and checks objects of its own (names no other test
// uses) calls t.Parallel: hack/e2e.sh runs those together, after the tests
// that kill the controller, restart the vCenter, change its latency or apply
// and delete shared examples, which stay serial.
package e2e
