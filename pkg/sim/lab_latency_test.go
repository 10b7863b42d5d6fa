package sim

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

func TestParseLatency(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want map[string]time.Duration
		jit  float64
		err  string
	}{
		{spec: "", want: map[string]time.Duration{}},
		{spec: "none", want: map[string]time.Duration{}},
		{spec: "CnsCreateVolume=4s", want: map[string]time.Duration{"CnsCreateVolume": 4 * time.Second}},
		{spec: " CnsAttachVolume=3s , ReconfigVM_Task=250ms ,jitter=10%", want: map[string]time.Duration{
			"CnsAttachVolume": 3 * time.Second, "ReconfigVM_Task": 250 * time.Millisecond}, jit: 0.1},
		{spec: "jitter=0.25", want: map[string]time.Duration{}, jit: 0.25},
		{spec: "CnsCreateVolume", err: "want METHOD=DURATION"},
		{spec: "CnsCreateVolume=fast", err: "want a duration"},
		{spec: "CnsCreateVolume=-1s", err: "want a duration"},
		{spec: "Cns Create=1s", err: "not a SOAP method name"},
		{spec: "jitter=100%", err: "below 100%"},
		{spec: "jitter=x", err: "not a number"},
	} {
		l, err := ParseLatency(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want an error with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		if len(l.Methods) != len(tc.want) || l.Jitter != tc.jit {
			t.Errorf("%q: got %v jitter %v, want %v jitter %v", tc.spec, l.Methods, l.Jitter, tc.want, tc.jit)
		}
		for m, d := range tc.want {
			if l.Methods[m] != d {
				t.Errorf("%q: %s = %v, want %v", tc.spec, m, l.Methods[m], d)
			}
		}
		back, err := ParseLatency(l.String())
		if err != nil || back.String() != l.String() {
			t.Errorf("%q: String %q does not read back (%v)", tc.spec, l.String(), err)
		}
	}
}

func TestRealisticPresetAndOverride(t *testing.T) {
	l, err := ParseLatency("realistic,CnsCreateVolume=10s")
	if err != nil {
		t.Fatal(err)
	}
	if l.Methods["CnsCreateVolume"] != 10*time.Second {
		t.Errorf("override: CnsCreateVolume = %v, want 10s", l.Methods["CnsCreateVolume"])
	}
	if l.Methods["CnsAttachVolume"] != Realistic["CnsAttachVolume"] || l.Methods["CnsAttachVolume"] == 0 {
		t.Errorf("preset: CnsAttachVolume = %v, want %v", l.Methods["CnsAttachVolume"], Realistic["CnsAttachVolume"])
	}
	if Realistic["CnsCreateVolume"] == 10*time.Second {
		t.Error("the override changed the preset itself")
	}
}

func TestJitterStaysInItsBand(t *testing.T) {
	l := Latency{Methods: map[string]time.Duration{"X": time.Second}, Jitter: 0.2}
	lo, hi := time.Second, time.Second
	for range 2000 {
		d := l.of("X")
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 800*time.Millisecond || hi > 1200*time.Millisecond {
		t.Errorf("jitter 20%% gave %v..%v", lo, hi)
	}
	if lo == hi {
		t.Error("jitter did not vary the duration")
	}
}

// taskInfo reads a task's info over SOAP.
func taskInfo(t *testing.T, c *clients, ref types.ManagedObjectReference) types.TaskInfo {
	t.Helper()
	var task mo.Task
	if err := property.DefaultCollector(c.vim).RetrieveOne(context.Background(), ref, []string{"info"}, &task); err != nil {
		t.Fatalf("task %s: %v", ref.Value, err)
	}
	return task.Info
}

// TestCreateTaskRunsThenItsEffectAppears: with latency, CnsCreateVolume
// answers with a running task whose progress moves; until the task
// completes, the volume is not found and the datastore's free space has
// not changed; then both are there.
func TestCreateTaskRunsThenItsEffectAppears(t *testing.T) {
	s := startSim(t, Options{Latency: Latency{Methods: map[string]time.Duration{"CnsCreateVolume": 1500 * time.Millisecond}}})
	c := connect(t, s)
	gold := policyID(t, c, "Gold")
	ds := dsRef(t, s, "vsanDatastore")
	before := freeSpace(t, c, ds)
	task, err := c.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{createSpec("slow", 1024, gold, ds)})
	if err != nil {
		t.Fatal(err)
	}
	var sawRunning, sawProgress bool
	for {
		info := taskInfo(t, c, task.Reference())
		if info.State == types.TaskInfoStateSuccess || info.State == types.TaskInfoStateError {
			break
		}
		sawRunning = sawRunning || info.State == types.TaskInfoStateRunning
		sawProgress = sawProgress || info.Progress > 0
		if found := queryByName(t, c, "slow"); len(found) != 0 {
			// The effect comes an instant before the task's state: only
			// a task still running after the volume showed is wrong.
			if again := taskInfo(t, c, task.Reference()); again.State == types.TaskInfoStateRunning {
				t.Fatalf("volume visible while its task runs (progress %d%%)", again.Progress)
			}
		}
		if got := freeSpace(t, c, ds); got != before {
			t.Fatalf("free space changed while the task runs: %d → %d", before, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawRunning || !sawProgress {
		t.Errorf("running seen: %v, progress moving seen: %v", sawRunning, sawProgress)
	}
	res := result(t, task, nil)
	if f := faultOf(res); f != nil {
		t.Fatalf("create: %s", f.LocalizedMessage)
	}
	if found := queryByName(t, c, "slow"); len(found) != 1 {
		t.Fatalf("after the task: %d volumes named slow", len(found))
	}
	if got := freeSpace(t, c, ds); got != before-1024*mib {
		t.Errorf("free space after the task: %d, want %d", got, before-1024*mib)
	}
}

func queryByName(t *testing.T, c *clients, name string) []cnstypes.CnsVolume {
	t.Helper()
	res, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{Names: []string{name}})
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return res.Volumes
}

// TestOtherCallsWait: a call that returns no task waits its latency before
// it is answered.
func TestOtherCallsWait(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	s.SetLatency(Latency{Methods: map[string]time.Duration{"CnsQueryVolume": 400 * time.Millisecond}})
	start := time.Now()
	queryByName(t, c, "nothing")
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("CnsQueryVolume answered in %v, before its latency of 400ms", took)
	}
	if got := s.Latency().Methods["CnsQueryVolume"]; got != 400*time.Millisecond {
		t.Errorf("Latency() = %v", got)
	}
}

// reconfigWindows reads, per task, the event numbers at which its VM
// reconfiguration started and ended.
func reconfigWindows(s *Sim, since int64) map[string][2]int64 {
	w := map[string][2]int64{}
	for _, e := range s.Events(since) {
		cur := w[e.Task]
		switch e.Kind {
		case EventReconfigStart:
			cur[0] = e.Seq
		case EventReconfigEnd:
			cur[1] = e.Seq
		default:
			continue
		}
		w[e.Task] = cur
	}
	return w
}

// attachTogether starts one CnsAttachVolume per (volume, VM) at once and
// waits for all of them.
func attachTogether(t *testing.T, c *clients, ids []string, vms []types.ManagedObjectReference) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, f := attach(t, c, ids[i], vms[i]); f != nil {
				t.Errorf("attach %s: %s", ids[i], f.LocalizedMessage)
			}
		}()
	}
	wg.Wait()
}

// TestReconfigurationsOfOneVMRunOneAtATime: two attaches to one VM run one
// after the other (their reconfigurations do not overlap), to two VMs side
// by side (they do). Shown by the order of events, not by timing.
func TestReconfigurationsOfOneVMRunOneAtATime(t *testing.T) {
	s := startSim(t, Options{NodeVMs: 2, Latency: Latency{Methods: map[string]time.Duration{"CnsAttachVolume": time.Second}}})
	c := connect(t, s)
	gold := policyID(t, c, "Gold")
	var ids []string
	for _, n := range []string{"a", "b", "c", "d"} {
		ids = append(ids, mustCreate(t, c, createSpec(n, 64, gold)))
	}
	vm1, vm2 := vmRef(s.NodeVMs()[0]), vmRef(s.NodeVMs()[1])

	mark := s.LastEvent()
	attachTogether(t, c, ids[:2], []types.ManagedObjectReference{vm1, vm1})
	w := reconfigWindows(s, mark)
	if len(w) != 2 {
		t.Fatalf("reconfigurations: %v", w)
	}
	var spans [][2]int64
	for _, span := range w {
		spans = append(spans, span)
	}
	a, b := spans[0], spans[1]
	if a[0] > b[0] {
		a, b = b, a
	}
	if b[0] < a[1] {
		t.Errorf("two reconfigurations of one VM overlapped: %v and %v", a, b)
	}

	mark = s.LastEvent()
	attachTogether(t, c, ids[2:], []types.ManagedObjectReference{vm1, vm2})
	w = reconfigWindows(s, mark)
	spans = spans[:0]
	for _, span := range w {
		spans = append(spans, span)
	}
	if len(spans) != 2 {
		t.Fatalf("reconfigurations: %v", w)
	}
	a, b = spans[0], spans[1]
	if a[0] > b[0] {
		a, b = b, a
	}
	if b[0] > a[1] {
		t.Errorf("reconfigurations of two VMs did not overlap: %v then %v", a, b)
	}
}
