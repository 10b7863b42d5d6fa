// Command vsphere-bench measures what a user waits for when vCenter is as
// slow as a real one: the embedded vCenter with the `realistic` latency
// (pkg/sim/latency.go), the controller in-process talking SOAP to it.
// Each measure is run several times and reported as a median with its
// spread, against the limit the latency model allows (one task, one VM
// reconfiguration) and against what a driver doing one at a time would
// take. It prints one table and writes an SVG plot.
//
//	go run ./test/bench/cmd/vsphere-bench -runs 3 -svg bench.svg
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/rtcount"
)

func main() {
	runs := flag.Int("runs", 3, "how often each measure is taken")
	svg := flag.String("svg", "", "write the plot (publish bursts: wall time against volumes) to this SVG file")
	md := flag.String("md", "", "also write the table as Markdown to this file")
	scaleVolumes := flag.Int("scale-volumes", 10000, "volumes of the scale measure (0: skip it)")
	scaleVMs := flag.Int("scale-vms", 100, "node VMs of the scale measure")
	idle := flag.Duration("idle", 5*time.Minute, "how long the scale measure counts an idle controller's vCenter calls")
	nbVMs := flag.Int("neighbour-vms", 1000, "unrelated VMs of the shared-vCenter measure and of the bursts' vCenter (0: a plain vCenter, and no shared-vCenter measure)")
	nbTasks := flag.Float64("neighbour-tasks", 10, "background tasks a minute of the shared vCenter")
	nbIdle := flag.Duration("neighbour-idle", time.Minute, "how long the shared-vCenter measure watches an idle controller")
	only := flag.String("only", "", "run only the measures whose name matches this regexp: bursts, scale, shared, syncer")
	flag.Parse()
	want := func(name string) bool { ok, _ := regexp.MatchString(*only, name); return ok }
	neighbours := sim.Neighbours{VMs: *nbVMs, TasksPerMinute: *nbTasks, OtherClusterVolumes: 50}
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)
	log.SetOutput(io.Discard)
	if *md != "" {
		_ = os.WriteFile(*md, nil, 0o644)
	}
	if want("bursts") {
		if err := run(*runs, *svg, *md, neighbours); err != nil {
			fmt.Fprintln(os.Stderr, "vsphere-bench:", err)
			os.Exit(1)
		}
	}
	if *scaleVolumes > 0 && want("scale") {
		if err := runScale(*scaleVolumes, *scaleVMs, *idle, *md); err != nil {
			fmt.Fprintln(os.Stderr, "vsphere-bench: scale:", err)
			os.Exit(1)
		}
	}
	if *nbVMs > 0 && want("shared") {
		if err := runShared(*nbVMs, *nbTasks, *nbIdle, *md); err != nil {
			fmt.Fprintln(os.Stderr, "vsphere-bench: shared vCenter:", err)
			os.Exit(1)
		}
	}
	if want("syncer") {
		if err := runSyncer(*runs, *md); err != nil {
			fmt.Fprintln(os.Stderr, "vsphere-bench: syncer:", err)
			os.Exit(1)
		}
	}
}

// env is an embedded vCenter with realistic latency and a controller on it.
type env struct {
	sim   *sim.Sim
	d     *driver.Driver
	vc    vcenter.Client
	calls rtcount.Counter
	dir   string
}

func newEnv(nodeVMs int, neighbours sim.Neighbours) (*env, error) {
	dir, err := os.MkdirTemp("", "vsphere-bench-")
	if err != nil {
		return nil, err
	}
	l, err := sim.ParseLatency("realistic")
	if err != nil {
		return nil, err
	}
	s, err := sim.Start(context.Background(), sim.Options{Dir: filepath.Join(dir, "vc"), NodeVMs: nodeVMs, Latency: l, Neighbours: neighbours})
	if err != nil {
		return nil, err
	}
	e := &env{sim: s, dir: dir}
	var uuids []string
	for _, vm := range s.NodeVMs() {
		uuids = append(uuids, vm.UUID)
	}
	e.vc, err = vcenter.New(context.Background(), vcenter.Options{
		Host: s.Host(), Port: s.Port(), User: s.Username(), Password: s.Password(),
		Thumbprint: s.Thumbprint(), ClusterID: "bench", Nodes: vcenter.StaticNodes(uuids...),
		WrapTransport: e.calls.Wrap,
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	e.d, err = driver.NewDriver(driver.Options{Mode: driver.ModeController, Version: "bench"}, e.vc, nil)
	return e, err
}

func (e *env) close() {
	_ = e.vc.Close(context.Background())
	_ = e.sim.Close()
	_ = os.RemoveAll(e.dir)
}

func capability() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// create makes n volumes at once and returns their IDs and the wall time.
func (e *env) create(prefix string, n int) ([]string, time.Duration, error) {
	ids := make([]string, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := e.d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
				Name: fmt.Sprintf("%s-%d", prefix, i), VolumeCapabilities: []*csi.VolumeCapability{capability()},
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, Parameters: map[string]string{"storagepolicyname": "Gold"},
			})
			ids[i], errs[i] = resp.GetVolume().GetVolumeId(), err
		})
	}
	wg.Wait()
	return ids, time.Since(start), firstErr(errs)
}

// each runs op for every id at once and returns the wall time.
func each(ids []string, op func(id string) error) (time.Duration, error) {
	errs := make([]error, len(ids))
	start := time.Now()
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = op(id) })
	}
	wg.Wait()
	return time.Since(start), firstErr(errs)
}

func (e *env) publish(id, node string) error {
	_, err := e.d.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: capability()})
	return err
}

func (e *env) unpublish(id, node string) error {
	_, err := e.d.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node})
	return err
}

func (e *env) deleteAll(ids []string) error {
	_, err := each(ids, func(id string) error {
		_, err := e.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
		return err
	})
	return err
}

// reconfigs counts the VM reconfigurations the embedded vCenter made since
// event mark.
func (e *env) reconfigs(mark int64) int {
	n := 0
	for _, ev := range e.sim.Events(mark) {
		if ev.Kind == sim.EventReconfigStart {
			n++
		}
	}
	return n
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// measure is one row of the table.
type measure struct {
	name     string
	samples  []time.Duration
	limit    time.Duration // what the latency model allows at best
	oneByOne time.Duration // the same work one operation at a time (the model)
	goal     float64       // the goal as a multiple of limit (0: none)
	note     string
}

// progress tells the person running the bench where it is.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (m measure) median() time.Duration {
	s := append([]time.Duration(nil), m.samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func (m measure) spread() string {
	lo, hi := m.samples[0], m.samples[0]
	for _, s := range m.samples {
		lo, hi = min(lo, s), max(hi, s)
	}
	return fmt.Sprintf("%.1f–%.1f s", lo.Seconds(), hi.Seconds())
}

func run(runs int, svgPath, mdPath string, neighbours sim.Neighbours) error {
	create := sim.Realistic["CnsCreateVolume"]
	reconfig := sim.Realistic["CnsAttachVolume"]
	var rows []measure

	// 32 concurrent creates of one policy, 30 node VMs.
	e, err := newEnv(30, neighbours)
	if err != nil {
		return err
	}
	creates := measure{name: "32 CreateVolume at once (Gold, 30 node VMs)", limit: create, oneByOne: 32 * create, goal: 1.5}
	// A running controller's policy and datastore caches are warm.
	if ids, _, err := e.create("pvc-warm", 1); err != nil {
		return err
	} else if err := e.deleteAll(ids); err != nil {
		return err
	}
	var rts []float64
	for r := range runs {
		// A burst of claims (a StatefulSet scaled up) comes to a controller
		// that has been quiet for a moment, not right after the last
		// run's deletes.
		time.Sleep(3 * time.Second)
		before := e.calls.Count()
		ids, took, err := e.create(fmt.Sprintf("pvc-r%d", r), 32)
		if err != nil {
			return err
		}
		creates.samples = append(creates.samples, took)
		progress("32 creates: %v", took.Round(time.Millisecond))
		rts = append(rts, float64(e.calls.Count()-before)/32)
		if err := e.deleteAll(ids); err != nil {
			return err
		}
	}
	creates.note = fmt.Sprintf("%.1f SOAP round trips per volume", median(rts))
	rows = append(rows, creates)
	e.close()

	// 30 volumes published to one node VM at once, then unpublished.
	e, err = newEnv(2, neighbours)
	if err != nil {
		return err
	}
	node1, node2 := e.sim.NodeVMs()[0].UUID, e.sim.NodeVMs()[1].UUID
	pub := measure{name: "30 ControllerPublish to one node VM at once", limit: reconfig, oneByOne: 30 * reconfig, goal: 3}
	unpub := measure{name: "30 ControllerUnpublish from one node VM at once", limit: reconfig, oneByOne: 30 * reconfig, goal: 3}
	var pubRe, unpubRe []float64
	for r := range runs {
		ids, _, err := e.create(fmt.Sprintf("pvc-p%d", r), 30)
		if err != nil {
			return err
		}
		mark := e.sim.LastEvent()
		took, err := each(ids, func(id string) error { return e.publish(id, node1) })
		if err != nil {
			return err
		}
		pub.samples = append(pub.samples, took)
		progress("30 publishes: %v", took.Round(time.Millisecond))
		pubRe = append(pubRe, float64(e.reconfigs(mark)))
		mark = e.sim.LastEvent()
		took, err = each(ids, func(id string) error { return e.unpublish(id, node1) })
		if err != nil {
			return err
		}
		unpub.samples = append(unpub.samples, took)
		progress("30 unpublishes: %v", took.Round(time.Millisecond))
		unpubRe = append(unpubRe, float64(e.reconfigs(mark)))
		if err := e.deleteAll(ids); err != nil {
			return err
		}
	}
	pub.note = fmt.Sprintf("%.0f VM reconfigurations (one by one: 30)", median(pubRe))
	unpub.note = fmt.Sprintf("%.0f VM reconfigurations (one by one: 30)", median(unpubRe))
	rows = append(rows, pub, unpub)

	// A drain: 10 volumes move from node VM 1 to node VM 2 at once.
	drain := measure{name: "drain: 10 volumes from node VM 1 to node VM 2 at once", limit: reconfig, oneByOne: 20 * reconfig, goal: 4}
	var drainRe []float64
	for r := range runs {
		ids, _, err := e.create(fmt.Sprintf("pvc-d%d", r), 10)
		if err != nil {
			return err
		}
		if _, err := each(ids, func(id string) error { return e.publish(id, node1) }); err != nil {
			return err
		}
		mark := e.sim.LastEvent()
		took, err := each(ids, func(id string) error {
			if err := e.unpublish(id, node1); err != nil {
				return err
			}
			return e.publish(id, node2)
		})
		if err != nil {
			return err
		}
		drain.samples = append(drain.samples, took)
		progress("drain of 10: %v", took.Round(time.Millisecond))
		drainRe = append(drainRe, float64(e.reconfigs(mark)))
		if _, err := each(ids, func(id string) error { return e.unpublish(id, node2) }); err != nil {
			return err
		}
		if err := e.deleteAll(ids); err != nil {
			return err
		}
	}
	drain.note = fmt.Sprintf("%.0f VM reconfigurations (one by one: 20)", median(drainRe))
	rows = append(rows, drain)

	// The plot: publish bursts of n volumes, one run each.
	var points []point
	for _, n := range []int{1, 2, 5, 10, 20, 30} {
		ids, _, err := e.create(fmt.Sprintf("pvc-n%d", n), n)
		if err != nil {
			return err
		}
		took, err := each(ids, func(id string) error { return e.publish(id, node1) })
		if err != nil {
			return err
		}
		points = append(points, point{n: n, ours: took, oneByOne: time.Duration(n) * reconfig, limit: reconfig})
		progress("publish burst of %d: %v", n, took.Round(time.Millisecond))
		if _, err := each(ids, func(id string) error { return e.unpublish(id, node1) }); err != nil {
			return err
		}
		if err := e.deleteAll(ids); err != nil {
			return err
		}
	}
	e.close()

	table := render(rows, runs, neighbours)
	fmt.Print(table)
	if mdPath != "" {
		if err := os.WriteFile(mdPath, []byte(table), 0o644); err != nil {
			return err
		}
	}
	if svgPath != "" {
		if err := os.WriteFile(svgPath, []byte(plot(points)), 0o644); err != nil {
			return err
		}
		fmt.Println("plot:", svgPath)
	}
	return nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// render is the table in Markdown (it reads as text too).
func render(rows []measure, runs int, n sim.Neighbours) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Latency model: realistic (CnsCreateVolume %v, a VM reconfiguration %v); %d runs each", sim.Realistic["CnsCreateVolume"], sim.Realistic["CnsAttachVolume"], runs)
	if n.VMs > 0 || n.TasksPerMinute > 0 {
		fmt.Fprintf(&b, "; a shared vCenter: %d unrelated VMs, %.0f background tasks a minute, another cluster's %d volumes", n.VMs, n.TasksPerMinute, n.OtherClusterVolumes)
	}
	fmt.Fprint(&b, "\n\n")
	fmt.Fprintln(&b, "| measure | ours: median (spread) | limit | ours / limit | goal | one by one | ours / one by one | |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|")
	for _, m := range rows {
		med := m.median()
		ratio := med.Seconds() / m.limit.Seconds()
		goal := "—"
		if m.goal > 0 {
			verdict := "met"
			if ratio > m.goal {
				verdict = fmt.Sprintf("missed by %.0f %%", 100*(ratio/m.goal-1))
			}
			goal = fmt.Sprintf("≤ %.1f× (%s)", m.goal, verdict)
		}
		fmt.Fprintf(&b, "| %s | %.1f s (%s) | %.2f s | %.2f× | %s | %.1f s | %.2f | %s |\n",
			m.name, med.Seconds(), m.spread(), m.limit.Seconds(), ratio, goal, m.oneByOne.Seconds(), med.Seconds()/m.oneByOne.Seconds(), m.note)
	}
	return b.String()
}

type point struct {
	n                     int
	ours, oneByOne, limit time.Duration
}

// plot draws wall time against the number of volumes published at once to
// one node VM: ours (measured), one by one and the limit (the model).
func plot(pts []point) string {
	const w, h, left, bottom, top, right = 640, 400, 60, 50, 30, 160
	maxN, maxT := 0, 0.0
	for _, p := range pts {
		maxN = max(maxN, p.n)
		maxT = max(maxT, p.oneByOne.Seconds(), p.ours.Seconds())
	}
	x := func(n int) float64 { return left + float64(n)/float64(maxN)*(w-left-right) }
	y := func(s float64) float64 { return h - bottom - s/maxT*(h-bottom-top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">ControllerPublish of n volumes to one node VM at once (realistic latency)</text>`+"\n", left)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, h-bottom)
	for _, p := range pts {
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%d</text>`+"\n", x(p.n), h-bottom+16, p.n)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">volumes</text>`+"\n", (w-right+left)/2, h-12)
	for s := 0.0; s <= maxT; s += 50 {
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.0f s</text>`+"\n", left-6, y(s)+4, s)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#ddd"/>`+"\n", left, y(s), w-right, y(s))
	}
	series := []struct {
		name, color string
		val         func(point) time.Duration
	}{
		{"one by one (model)", "#c0392b", func(p point) time.Duration { return p.oneByOne }},
		{"ours (measured)", "#2471a3", func(p point) time.Duration { return p.ours }},
		{"limit: one reconfiguration", "#27ae60", func(p point) time.Duration { return p.limit }},
	}
	for i, sr := range series {
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", x(p.n), y(sr.val(p).Seconds())))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", sr.color, strings.Join(path, " "))
		for _, p := range pts {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.n), y(sr.val(p).Seconds()), sr.color)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", w-right+8, top+20+18*i, sr.color, sr.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
