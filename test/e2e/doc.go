// Package e2e tests the driver through a real Kubernetes API server,
// controller-manager, scheduler and kubelet with containerd, the real CSI
// sidecars and the embedded vCenter, all started by hack/e2e.sh (make e2e).
//
// A test that only makes and checks objects of its own (names no other test
// uses) calls t.Parallel: hack/e2e.sh runs those together, after the tests
// that kill the controller, restart the vCenter, change its latency or apply
// and delete shared examples, which stay serial.
//
// The tests of the chart phase (files with //go:build e2e_chart: the chart
// installed by helm on three nodes) need the driver's host processes
// stopped: hack/e2e.sh runs them after the others, with the tag, having
// learnt which they are from go test -list; it names no test. What the
// harness started is read from its cluster.json and process records through
// internal/harness.
package e2e
