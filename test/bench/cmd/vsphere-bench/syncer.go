package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// methodCalls counts the vCenter client's SOAP calls by method.
type methodCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *methodCalls) SOAPCall(method, _ string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[method]++
}
func (c *methodCalls) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}
func (c *methodCalls) TasksInFlight(int)        {}
func (c *methodCalls) LoginRefused()            {}
func (c *methodCalls) TasksInDoubt(string, int) {}
func (c *methodCalls) NodeVMs(int)              {}
func (c *methodCalls) WatchUpdates(int)         {}

// runSyncer measures the metadata syncer: for 1, 100 and 1,000 claims
// labelled at once (of 1,000 bound volumes), the CnsUpdateVolumeMetadata
// calls and the time from the first change until every change is in CNS,
// under the realistic latency model. Kubernetes is client-go's fake
// clientset (its informers see a change within milliseconds, as from an
// API server on the same network).
func runSyncer(runs int, mdPath string) error {
	dir, err := os.MkdirTemp("", "vsphere-bench-syncer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := sim.ParseLatency("realistic")
	if err != nil {
		return err
	}
	s, err := sim.Start(context.Background(), sim.Options{Dir: filepath.Join(dir, "vc"), NodeVMs: 3, Latency: l})
	if err != nil {
		return err
	}
	defer s.Close()
	const total = 1000
	ids, err := s.SeedVolumes(total, "pvc", "bench", "vSAN Default Storage Policy", 1)
	if err != nil {
		return err
	}
	calls := &methodCalls{n: map[string]int{}}
	vc, err := vcenter.New(context.Background(), vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
		Thumbprint: s.Thumbprint(), ClusterID: "bench", Nodes: vcenter.StaticNodes(), Observer: calls,
	})
	if err != nil {
		return err
	}
	defer vc.Close(context.Background())
	kube := fake.NewClientset()
	ctx := context.Background()
	for i, id := range ids {
		uid := types.UID(fmt.Sprintf("uid-%d", i))
		pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pvc-%d", i)}}
		pv.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: "csi.vsphere.vmware.com", VolumeHandle: id}
		pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "ns", Name: fmt.Sprintf("data-%d", i), UID: uid}
		pv.Status.Phase = v1.VolumeBound
		pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("data-%d", i), UID: uid}}
		pvc.Spec.VolumeName = pv.Name
		if _, err := kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := kube.CoreV1().PersistentVolumeClaims("ns").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	sy, err := syncer.New(kube, vc, syncer.Options{Driver: "csi.vsphere.vmware.com"})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = sy.Run(runCtx) }()
	start := time.Now()
	for sy.LastReport().At.IsZero() {
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("no full sync in 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	firstSync := time.Since(start)

	var b strings.Builder
	fmt.Fprintf(&b, "\nThe metadata syncer: claims labelled at once, of %d bound volumes; realistic latency (CnsUpdateVolumeMetadata %v); %d runs each\n\n",
		total, sim.Realistic["CnsUpdateVolumeMetadata"], runs)
	fmt.Fprintln(&b, "| changes | CnsUpdateVolumeMetadata calls: median (spread) | from the first change to all in CNS: median (spread) |")
	fmt.Fprintln(&b, "|---|---|---|")
	for _, n := range []int{1, 100, 1000} {
		var secs []time.Duration
		var nCalls []float64
		for r := range runs {
			value := fmt.Sprintf("n%d-r%d", n, r)
			before := calls.get("CnsUpdateVolumeMetadata")
			t0 := time.Now()
			for i := range n {
				pvc, err := kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, fmt.Sprintf("data-%d", i), metav1.GetOptions{})
				if err != nil {
					return err
				}
				pvc.Labels = map[string]string{"run": value}
				if _, err := kube.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
					return err
				}
			}
			for labelled(s, value) < n {
				if time.Since(t0) > 5*time.Minute {
					return fmt.Errorf("%d changes not in CNS after 5 minutes", n)
				}
				time.Sleep(20 * time.Millisecond)
			}
			secs = append(secs, time.Since(t0))
			nCalls = append(nCalls, float64(calls.get("CnsUpdateVolumeMetadata")-before))
			time.Sleep(time.Second) // the worker idle again
		}
		fmt.Fprintf(&b, "| %d | %.0f (%.0f–%.0f) | %.2f s (%.2f–%.2f s) |\n", n, median(nCalls), slices.Min(nCalls), slices.Max(nCalls),
			medianDur(secs).Seconds(), slices.Min(secs).Seconds(), slices.Max(secs).Seconds())
	}
	fmt.Fprintf(&b, "\nThe first full sync (1,000 volumes: the listing, PV and claim written to each): %.1f s\n", firstSync.Seconds())
	fmt.Print(b.String())
	appendMD(mdPath, b.String())
	return nil
}

// labelled counts the claims in CNS with run=value.
func labelled(s *sim.Sim, value string) int {
	n := 0
	for _, v := range s.ContainerVolumes() {
		for _, e := range v.Entities {
			if e.Kind == vcenter.EntityPVC && e.Labels["run"] == value {
				n++
			}
		}
	}
	return n
}

// appendMD appends text to the Markdown file, when there is one.
func appendMD(path, text string) {
	if path == "" {
		return
	}
	if f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		_, _ = f.WriteString(text)
		_ = f.Close()
	}
}
