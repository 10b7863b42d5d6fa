package syncer_test

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	vimtypes "github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vslm"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

const driverName = "csi.vsphere.vmware.com"

// calls counts the vCenter client's SOAP calls by method.
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) SOAPCall(method, _ string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[method]++
}
func (c *calls) TasksInFlight(int)        {}
func (c *calls) LoginRefused()            {}
func (c *calls) TasksInDoubt(string, int) {}
func (c *calls) NodeVMs(int)              {}
func (c *calls) WatchUpdates(int)         {}

func (c *calls) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

type env struct {
	sim   *sim.Sim
	vc    vcenter.Client
	calls *calls
	kube  *fake.Clientset
}

func connect(t *testing.T, s *sim.Sim, clusterID string) (vcenter.Client, *calls) {
	t.Helper()
	c := &calls{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vc, err := vcenter.New(ctx, vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(), Thumbprint: s.Thumbprint(),
		Datacenters: []string{s.Datacenter()}, ClusterID: clusterID, UserAgent: "syncer-test", Observer: c,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vc.Close(context.Background()) })
	return vc, c
}

func newEnv(t *testing.T) *env {
	s := simtest.Start(t, sim.Options{NodeVMs: 2})
	vc, c := connect(t, s, "cluster-a")
	return &env{sim: s, vc: vc, calls: c, kube: fake.NewClientset()}
}

// run starts a syncer; it stops at the test's end.
func (e *env) run(t *testing.T, kc kubernetes.Interface, vc syncer.CNS, opts syncer.Options) *syncer.Syncer {
	t.Helper()
	opts.Driver = driverName
	if opts.Gather == 0 {
		opts.Gather = 100 * time.Millisecond
	}
	s, err := syncer.New(kc, vc, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// volume makes a CNS volume as CreateVolume does (with the provisioner's
// PV and claim names).
func (e *env) volume(t *testing.T, name, ns, claim string) string {
	t.Helper()
	ctx := context.Background()
	dss, err := e.vc.Datastores(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range dss {
		if d.Reachable {
			ids = append(ids, d.ID)
		}
	}
	v, err := e.vc.CreateVolume(ctx, vcenter.CreateSpec{Name: name, CapacityBytes: 16 << 20, DatastoreIDs: ids,
		PVName: name, PVCName: claim, PVCNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	return v.ID
}

func pvObj(name, handle, ns, claim string, uid types.UID) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
	pv.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: driverName, VolumeHandle: handle}
	pv.Spec.Capacity = v1.ResourceList{v1.ResourceStorage: resource.MustParse("16Mi")}
	pv.Spec.PersistentVolumeReclaimPolicy = v1.PersistentVolumeReclaimRetain
	pv.Status.Phase = v1.VolumeAvailable
	if claim != "" {
		pv.Spec.ClaimRef = &v1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim, UID: uid}
		pv.Status.Phase = v1.VolumeBound
	}
	return pv
}

func pvcObj(ns, name, pv string, uid types.UID, labels map[string]string) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, Labels: labels}}
	pvc.Spec.VolumeName = pv
	pvc.Status.Phase = v1.ClaimBound
	return pvc
}

func podObj(ns, name, node string, claims ...string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pod.Spec.NodeName = node
	pod.Status.Phase = v1.PodRunning
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: c,
			VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return pod
}

// bind makes a PV, its claim (bound) and, when node is set, a pod using it.
func (e *env) bind(t *testing.T, handle, pv, ns, claim string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	uid := types.UID("uid-" + ns + "-" + claim)
	if _, err := e.kube.CoreV1().PersistentVolumes().Create(ctx, pvObj(pv, handle, ns, claim, uid), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvcObj(ns, claim, pv, uid, labels), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// entities is what CNS holds for the volume, as the Container Volumes view
// shows it: "CLUSTER KIND ns/name labels → refers" lines, sorted.
func entities(s *sim.Sim, volumeID string) []string {
	for _, v := range s.ContainerVolumes() {
		if v.ID != volumeID {
			continue
		}
		var out []string
		for _, e := range v.Entities {
			line := e.Cluster + " " + e.Kind + " " + e.Namespace + "/" + e.Name
			if len(e.Labels) > 0 {
				var kv []string
				for _, k := range sortedKeys(e.Labels) {
					kv = append(kv, k+"="+e.Labels[k])
				}
				line += " " + strings.Join(kv, ",")
			}
			if e.Refers != "" {
				line += " → " + e.Refers
			}
			out = append(out, line)
		}
		sort.Strings(out)
		return out
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// eventually waits up to d for cond.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; now: %s", what, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitEntities(t *testing.T, s *sim.Sim, volumeID string, want ...string) {
	t.Helper()
	sort.Strings(want)
	eventually(t, 10*time.Second, "CNS metadata of "+volumeID, func() (bool, string) {
		got := entities(s, volumeID)
		return strings.Join(got, "\n") == strings.Join(want, "\n"), fmt.Sprintf("\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	})
}

func TestMetadataKeptCurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := e.volume(t, "pvc-1", "shop", "data")
	e.bind(t, id, "pvc-1", "shop", "data", map[string]string{"app": "db"})
	s := e.run(t, e.kube, e.vc, syncer.Options{OrphanGrace: time.Second})

	waitEntities(t, e.sim, id,
		"cluster-a PERSISTENT_VOLUME /pvc-1",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/data app=db → PERSISTENT_VOLUME pvc-1")

	// A pod scheduled, then a second one (ReadWriteMany).
	pods := e.kube.CoreV1().Pods("shop")
	for _, p := range []*v1.Pod{podObj("shop", "db-0", "node-1", "data"), podObj("shop", "db-1", "node-2", "data")} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitEntities(t, e.sim, id,
		"cluster-a PERSISTENT_VOLUME /pvc-1",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/data app=db → PERSISTENT_VOLUME pvc-1",
		"cluster-a POD shop/db-0 → PERSISTENT_VOLUME_CLAIM shop/data",
		"cluster-a POD shop/db-1 → PERSISTENT_VOLUME_CLAIM shop/data")

	// Labels changed on both; a pod deleted.
	pvc, _ := e.kube.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
	pvc.Labels = map[string]string{"app": "db", "tier": "gold"}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims("shop").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pv, _ := e.kube.CoreV1().PersistentVolumes().Get(ctx, "pvc-1", metav1.GetOptions{})
	pv.Labels = map[string]string{"backup": "daily"}
	if _, err := e.kube.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEntities(t, e.sim, id,
		"cluster-a PERSISTENT_VOLUME /pvc-1 backup=daily",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/data app=db,tier=gold → PERSISTENT_VOLUME pvc-1",
		"cluster-a POD shop/db-0 → PERSISTENT_VOLUME_CLAIM shop/data")

	// The claim deleted, the PV retained (released).
	if err := pods.Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.kube.CoreV1().PersistentVolumeClaims("shop").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pv, _ = e.kube.CoreV1().PersistentVolumes().Get(ctx, "pvc-1", metav1.GetOptions{})
	pv.Status.Phase = v1.VolumeReleased
	if _, err := e.kube.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEntities(t, e.sim, id, "cluster-a PERSISTENT_VOLUME /pvc-1 backup=daily")
	if r := s.LastReport(); len(r.Orphans) != 0 {
		t.Fatalf("orphans while the PV exists: %+v", r.Orphans)
	}

	// The PV deleted by hand: nothing of this cluster left, the volume
	// kept, and reported as an orphan once it has had no PV for the grace.
	if err := e.kube.CoreV1().PersistentVolumes().Delete(ctx, "pvc-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEntities(t, e.sim, id)
	eventually(t, 10*time.Second, "the orphan reported", func() (bool, string) {
		r := s.LastReport()
		return len(r.Orphans) == 1 && r.Orphans[0].VolumeID == id && r.Orphans[0].Name == "pvc-1", fmt.Sprintf("%+v", r.Orphans)
	})
	if _, err := e.vc.Volume(ctx, id); err != nil {
		t.Fatalf("the orphan's volume: %v (the syncer never deletes one)", err)
	}
}

// TestManyChangesFewCalls: 1,000 claims labelled at once reach CNS in at
// most 20 CnsUpdateVolumeMetadata calls.
func TestManyChangesFewCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 1000
	ids, err := e.sim.SeedVolumes(n, "pvc", "cluster-a", "vSAN Default Storage Policy", 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		e.bind(t, id, fmt.Sprintf("pvc-%d", i), "ns", fmt.Sprintf("data-%d", i), nil)
	}
	s := e.run(t, e.kube, e.vc, syncer.Options{})
	eventually(t, time.Minute, "the first full sync", func() (bool, string) {
		r := s.LastReport()
		return !r.At.IsZero(), ""
	})
	if r := s.LastReport(); r.Volumes != n || r.PVs != n || r.Updated != n {
		t.Fatalf("first full sync: %+v; want %d volumes, %d PVs, %d updated (PV and claim written to each)", r, n, n, n)
	}
	waitEntities(t, e.sim, ids[7], "cluster-a PERSISTENT_VOLUME /pvc-7", "cluster-a PERSISTENT_VOLUME_CLAIM ns/data-7 → PERSISTENT_VOLUME pvc-7")
	before := e.calls.get("CnsUpdateVolumeMetadata")
	for i := range n {
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, fmt.Sprintf("data-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Labels = map[string]string{"release": "v2"}
		if _, err := e.kube.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "every claim's label in CNS", func() (bool, string) {
		missing := 0
		for _, v := range e.sim.ContainerVolumes() {
			for _, en := range v.Entities {
				if en.Kind == vcenter.EntityPVC && en.Labels["release"] != "v2" {
					missing++
				}
			}
		}
		return missing == 0, fmt.Sprintf("%d claims without the label", missing)
	})
	used := e.calls.get("CnsUpdateVolumeMetadata") - before
	t.Logf("%d claims labelled: %d CnsUpdateVolumeMetadata calls (all calls so far: %v)", n, used, e.calls.n)
	if used > 20 {
		t.Errorf("%d CnsUpdateVolumeMetadata calls for %d changes; want at most 20", used, n)
	}
}

// seedBound makes n CNS volumes of cluster-a with their PVs and claims.
func (e *env) seedBound(t *testing.T, n int) []string {
	t.Helper()
	ids, err := e.sim.SeedVolumes(n, "pvc", "cluster-a", "vSAN Default Storage Policy", 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		e.bind(t, id, fmt.Sprintf("pvc-%d", i), "ns", fmt.Sprintf("data-%d", i), nil)
	}
	return ids
}

// label puts release=value on the first n claims of seedBound.
func (e *env) label(t *testing.T, n int, value string) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		pvc, err := e.kube.CoreV1().PersistentVolumeClaims("ns").Get(ctx, fmt.Sprintf("data-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.Labels = map[string]string{"release": value}
		if _, err := e.kube.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// inStep says whether CNS holds exactly the PV and the labelled claim of
// cluster-a for each volume (no entity twice, none missing), and pods
// where pods[i] is set.
func inStep(s *sim.Sim, ids []string, value string, pods map[int]string) (bool, string) {
	bad := 0
	var first string
	for i, id := range ids {
		labels := ""
		if value != "" {
			labels = " release=" + value
		}
		want := []string{
			fmt.Sprintf("cluster-a PERSISTENT_VOLUME /pvc-%d", i),
			fmt.Sprintf("cluster-a PERSISTENT_VOLUME_CLAIM ns/data-%d%s → PERSISTENT_VOLUME pvc-%d", i, labels, i),
		}
		if p, ok := pods[i]; ok {
			want = append(want, fmt.Sprintf("cluster-a POD ns/%s → PERSISTENT_VOLUME_CLAIM ns/data-%d", p, i))
		}
		sort.Strings(want)
		if got := entities(s, id); strings.Join(got, "\n") != strings.Join(want, "\n") {
			bad++
			if first == "" {
				first = fmt.Sprintf("%s: %q, want %q", id, got, want)
			}
		}
	}
	return bad == 0, fmt.Sprintf("%d volumes not in step; first %s", bad, first)
}

// TestVCenterDownDuringChanges: vCenter unreachable for 60 s while claims
// are labelled and pods start; afterwards every change is in CNS.
func TestVCenterDownDuringChanges(t *testing.T) {
	t.Parallel() // a minute of waiting
	e := newEnv(t)
	ctx := context.Background()
	const n = 20
	ids := e.seedBound(t, n)
	s := e.run(t, e.kube, e.vc, syncer.Options{MaxBackoff: 5 * time.Second})
	eventually(t, time.Minute, "the first full sync", func() (bool, string) { return !s.LastReport().At.IsZero(), "" })
	e.sim.Outage(60 * time.Second)
	downSince := time.Now()
	e.label(t, n, "during-outage")
	pods := map[int]string{}
	for i := range 5 {
		pods[i] = fmt.Sprintf("app-%d", i)
		if _, err := e.kube.CoreV1().Pods("ns").Create(ctx, podObj("ns", pods[i], "node-1", fmt.Sprintf("data-%d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(downSince.Add(60 * time.Second)))
	if ok, _ := inStep(e.sim, ids, "during-outage", pods); ok {
		t.Fatal("the changes reached CNS during the outage: the outage did not happen")
	}
	eventually(t, 60*time.Second, "every change in CNS after the outage", func() (bool, string) {
		return inStep(e.sim, ids, "during-outage", pods)
	})
	t.Logf("in CNS %s after the outage ended", time.Since(downSince.Add(60*time.Second)).Round(100*time.Millisecond))
}

// TestAnotherReplicaTakesOver: the replica holding the lease stops in the
// middle of a metadata call (its vCenter call slow); the other replica
// takes the lease and puts CNS in step: nothing lost, nothing twice.
func TestAnotherReplicaTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 300
	ids := e.seedBound(t, n)
	vcB, _ := connect(t, e.sim, "cluster-a") // the other replica's own vCenter session
	lease := syncer.Lease{Namespace: "kube-system", Duration: 2 * time.Second, Renew: time.Second, Retry: 200 * time.Millisecond}
	var mu sync.Mutex
	terms := map[string]int{}
	started := make(chan string, 4)
	replica := func(name string, vc vcenter.Client) context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		l := lease
		l.Identity = name
		go func() {
			defer close(done)
			_ = syncer.RunElected(ctx, e.kube, l, func(ctx context.Context) {
				mu.Lock()
				terms[name]++
				mu.Unlock()
				s, err := syncer.New(e.kube, vc, syncer.Options{Driver: driverName, Gather: 100 * time.Millisecond, MaxBackoff: 2 * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				started <- name
				_ = s.Run(ctx)
			})
		}()
		t.Cleanup(func() { cancel(); <-done })
		return cancel
	}
	stopA := replica("replica-a", e.vc)
	if got := <-started; got != "replica-a" {
		t.Fatalf("first leader %s", got)
	}
	replica("replica-b", vcB)
	eventually(t, time.Minute, "replica A's first full sync", func() (bool, string) {
		return inStep(e.sim, ids, "", nil)
	})

	e.sim.SetLatency(sim.Latency{Methods: map[string]time.Duration{"CnsUpdateVolumeMetadata": 3 * time.Second}})
	before := e.sim.LastEvent()
	e.label(t, n, "v2")
	eventually(t, 20*time.Second, "replica A's metadata call under way", func() (bool, string) {
		for _, ev := range e.sim.Events(before) {
			if ev.Kind == sim.EventTaskStart && ev.Method == "CnsUpdateVolumeMetadata" {
				return true, ""
			}
		}
		return false, "no CnsUpdateVolumeMetadata task yet"
	})
	stopA() // replica A ends mid-call; its task runs on in vCenter, its answer is never read
	select {
	case got := <-started:
		if got != "replica-b" {
			t.Fatalf("new leader %s", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replica B did not take the lease")
	}
	eventually(t, time.Minute, "every claim's label in CNS, each entity once", func() (bool, string) {
		return inStep(e.sim, ids, "v2", nil)
	})
	mu.Lock()
	defer mu.Unlock()
	if terms["replica-a"] != 1 || terms["replica-b"] != 1 {
		t.Errorf("terms: %v; want one each", terms)
	}
}

// TestTwoClustersShareAVolume: a volume of cluster A that cluster B uses
// through a static PV holds both clusters' entities; each keeps its own
// current and leaves the other's.
func TestTwoClustersShareAVolume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := e.volume(t, "pvc-1", "shop", "data")
	e.bind(t, id, "pvc-1", "shop", "data", map[string]string{"app": "db"})
	e.run(t, e.kube, e.vc, syncer.Options{})

	vcB, _ := connect(t, e.sim, "cluster-b")
	kubeB := fake.NewClientset()
	uid := types.UID("uid-b")
	if _, err := kubeB.CoreV1().PersistentVolumes().Create(ctx, pvObj("static-shared", id, "reports", "archive", uid), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubeB.CoreV1().PersistentVolumeClaims("reports").Create(ctx, pvcObj("reports", "archive", "static-shared", uid, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sB := e.run(t, kubeB, vcB, syncer.Options{})
	both := func(aLabels string) []string {
		return []string{
			"cluster-a PERSISTENT_VOLUME /pvc-1",
			"cluster-a PERSISTENT_VOLUME_CLAIM shop/data " + aLabels + " → PERSISTENT_VOLUME pvc-1",
			"cluster-b PERSISTENT_VOLUME /static-shared",
			"cluster-b PERSISTENT_VOLUME_CLAIM reports/archive → PERSISTENT_VOLUME static-shared",
		}
	}
	waitEntities(t, e.sim, id, both("app=db")...)
	if r := sB.LastReport(); len(r.Missing) != 0 {
		t.Errorf("cluster B reports its static PV's volume missing: %+v", r.Missing)
	}
	pvc, _ := e.kube.CoreV1().PersistentVolumeClaims("shop").Get(ctx, "data", metav1.GetOptions{})
	pvc.Labels = map[string]string{"app": "db2"}
	if _, err := e.kube.CoreV1().PersistentVolumeClaims("shop").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEntities(t, e.sim, id, both("app=db2")...)
	var clusters []string
	for _, v := range e.sim.ContainerVolumes() {
		if v.ID == id {
			clusters = v.Clusters
		}
	}
	if strings.Join(clusters, ",") != "cluster-a,cluster-b" {
		t.Errorf("container clusters %v; want cluster-a, cluster-b", clusters)
	}
}

// TestMissingVolumeReported: a PV whose CNS volume was deleted in vCenter
// is reported (and its claim named); nothing is made in its place.
func TestMissingVolumeReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := e.volume(t, "pvc-1", "shop", "data")
	e.bind(t, id, "pvc-1", "shop", "data", nil)
	if err := e.vc.DeleteVolume(ctx, id); err != nil {
		t.Fatal(err)
	}
	s := e.run(t, e.kube, e.vc, syncer.Options{})
	eventually(t, 10*time.Second, "the missing volume reported", func() (bool, string) {
		r := s.LastReport()
		return len(r.Missing) == 1 && r.Missing[0].PV == "pvc-1" && r.Missing[0].Claim == "shop/data", fmt.Sprintf("%+v", r)
	})
	if n := len(e.sim.ContainerVolumes()); n != 0 {
		t.Errorf("%d volumes in CNS; the syncer makes none", n)
	}
}

// TestFileVolumeMetadata: a ReadWriteMany file volume (a vSAN file share)
// shows its claim and the pods of every node that mounts it.
func TestFileVolumeMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	support, err := e.vc.FileShareSupport(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var dss []string
	for id, why := range support {
		if why == "" {
			dss = append(dss, id)
		}
	}
	if len(dss) == 0 {
		t.Fatalf("no datastore takes file shares: %v", support)
	}
	v, err := e.vc.CreateVolume(ctx, vcenter.CreateSpec{Name: "pvc-files", CapacityBytes: 16 << 20, DatastoreIDs: dss,
		PVName: "pvc-files", PVCName: "shared", PVCNamespace: "web", File: &vcenter.FileSpec{}})
	if err != nil {
		t.Fatal(err)
	}
	if !v.File {
		t.Fatalf("volume %s is not a file volume", v.ID)
	}
	e.bind(t, v.ID, "pvc-files", "web", "shared", map[string]string{"app": "cms"})
	for _, p := range []*v1.Pod{podObj("web", "cms-a", "node-1", "shared"), podObj("web", "cms-b", "node-2", "shared")} {
		if _, err := e.kube.CoreV1().Pods("web").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.run(t, e.kube, e.vc, syncer.Options{})
	waitEntities(t, e.sim, v.ID,
		"cluster-a PERSISTENT_VOLUME /pvc-files",
		"cluster-a PERSISTENT_VOLUME_CLAIM web/shared app=cms → PERSISTENT_VOLUME pvc-files",
		"cluster-a POD web/cms-a → PERSISTENT_VOLUME_CLAIM web/shared",
		"cluster-a POD web/cms-b → PERSISTENT_VOLUME_CLAIM web/shared")
}

// TestStaticDiskAdopted: a static PV whose handle is a first-class disk
// made in vSphere (no CNS volume yet) is registered with CNS and gets its
// metadata; it is not reported missing. A handle that is no disk either is.
func TestStaticDiskAdopted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	u, err := url.Parse(e.sim.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(e.sim.Username(), e.sim.Password())
	gc, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		t.Fatal(err)
	}
	f := find.NewFinder(gc.Client, true)
	dc, err := f.Datacenter(ctx, e.sim.Datacenter())
	if err != nil {
		t.Fatal(err)
	}
	ds, err := f.SetDatacenter(dc).Datastore(ctx, "silver-ds")
	if err != nil {
		t.Fatal(err)
	}
	task, err := vslm.NewObjectManager(gc.Client).CreateDisk(ctx, vimtypes.VslmCreateSpec{
		Name: "legacy-disk", CapacityInMB: 64,
		BackingSpec: &vimtypes.VslmCreateSpecDiskFileBackingSpec{
			VslmCreateSpecBackingSpec: vimtypes.VslmCreateSpecBackingSpec{Datastore: ds.Reference()},
			ProvisioningType:          string(vimtypes.BaseConfigInfoDiskFileBackingInfoProvisioningTypeThin),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	disk := r.Result.(vimtypes.VStorageObject).Config.Id.Id
	e.bind(t, disk, "legacy", "shop", "old-data", nil)
	lost := "6c9a7f0e-1b2c-4d3e-8f40-123456789abc"
	e.bind(t, lost, "lost", "shop", "lost-data", nil)
	s := e.run(t, e.kube, e.vc, syncer.Options{})
	waitEntities(t, e.sim, disk,
		"cluster-a PERSISTENT_VOLUME /legacy",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/old-data → PERSISTENT_VOLUME legacy")
	eventually(t, 10*time.Second, "the missing volume reported", func() (bool, string) {
		r := s.LastReport()
		return len(r.Missing) == 1 && r.Missing[0].PV == "lost", fmt.Sprintf("%+v", r.Missing)
	})
	if v, err := e.vc.Volume(ctx, disk); err != nil || v.Name != vcenter.StaticVolumeName(disk) {
		t.Errorf("the registered disk: %+v, %v", v, err)
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// panicky is the syncer's CNS with a bug injected: the first
// UpdateMetadata call after arm panics.
type panicky struct {
	syncer.CNS
	armed  atomic.Bool
	panics atomic.Int32
}

func (p *panicky) UpdateMetadata(ctx context.Context, u []vcenter.MetadataUpdate) (map[string]error, error) {
	if p.armed.CompareAndSwap(true, false) {
		p.panics.Add(1)
		panic("injected into the metadata syncer")
	}
	return p.CNS.UpdateMetadata(ctx, u)
}

// TestPanicInSyncerIsRecovered: a panic while writing metadata (the
// syncer's own goroutine, out of reach of any gRPC recover) is logged,
// the write is retried and the metadata arrives; the process lives.
func TestPanicInSyncerIsRecovered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.volume(t, "pvc-p", "shop", "data")
	e.bind(t, id, "pvc-p", "shop", "data", nil)
	cns := &panicky{CNS: e.vc}
	e.run(t, e.kube, cns, syncer.Options{OrphanGrace: time.Hour})
	waitEntities(t, e.sim, id,
		"cluster-a PERSISTENT_VOLUME /pvc-p",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/data → PERSISTENT_VOLUME pvc-p")

	cns.armed.Store(true)
	if _, err := e.kube.CoreV1().Pods("shop").Create(context.Background(), podObj("shop", "web-0", "node-1", "data"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEntities(t, e.sim, id,
		"cluster-a PERSISTENT_VOLUME /pvc-p",
		"cluster-a PERSISTENT_VOLUME_CLAIM shop/data → PERSISTENT_VOLUME pvc-p",
		"cluster-a POD shop/web-0 → PERSISTENT_VOLUME_CLAIM shop/data")
	if n := cns.panics.Load(); n != 1 {
		t.Errorf("%d panics injected, want 1 (the pod's write)", n)
	}
}
