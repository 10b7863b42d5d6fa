// Package kube is what the controller reads of the Kubernetes API, through
// client-go informers: which VMs are this cluster's nodes (the CSINode
// objects of this driver carry each node's ID, its VM's BIOS UUID). It
// only reads; the chart grants it get, list and watch.
package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// ErrNoAPI: no kubeconfig was given and the process does not run in a pod.
var ErrNoAPI = errors.New("no Kubernetes API: no --kubeconfig, and not running in a pod")

// Connect makes a Kubernetes client: from kubeconfig when set, else the
// pod's own service account when the process runs in a pod (what
// client-go's in-cluster configuration finds), else ErrNoAPI.
func Connect(kubeconfig, userAgent string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	case inPod():
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("the pod's Kubernetes API configuration: %w", err)
		}
	default:
		return nil, ErrNoAPI
	}
	cfg.UserAgent = userAgent
	// The controller lists once and then watches: a modest rate suffices
	// and keeps it a quiet client of the API server.
	cfg.QPS, cfg.Burst = 20, 40
	return kubernetes.NewForConfig(cfg)
}

// inPod says whether the process runs in a pod with a service account
// token (what rest.InClusterConfig needs).
func inPod() bool {
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// syncTimeout bounds the wait for the first listing: the controller is no
// use without knowing its nodes, and a clear error beats hanging.
const syncTimeout = 2 * time.Minute

// waitSynced waits for an informer's first listing.
func waitSynced(ctx context.Context, what string, synced func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	logged := time.Now()
	for !synced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("listing %s from the Kubernetes API: %w (is the API server reachable, and does the controller's ClusterRole grant list and watch?)", what, ctx.Err())
		case <-tick.C:
			if time.Since(logged) > 10*time.Second {
				klog.InfoS("Still waiting for the Kubernetes API", "listing", what)
				logged = time.Now()
			}
		}
	}
	return nil
}

// PodNamespace is the namespace of the pod the process runs in ("" when
// it does not run in one).
func PodNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
