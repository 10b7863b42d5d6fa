package sim

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Latency is how long the embedded vCenter takes per SOAP method. For a
// method that returns a task (every CNS volume method, *_Task), the task
// runs for that long and its effect appears only when it completes; any
// other call waits that long before it is answered. Jitter spreads each
// duration uniformly by ± that fraction.
//
// The zero value answers at once.
type Latency struct {
	Methods map[string]time.Duration
	Jitter  float64 // 0 ≤ Jitter < 1
}

// Realistic is the preset `realistic`: what one operation takes on a real
// vCenter, one at a time. Where the figures come from, and where there are
// none:
//   - CnsAttachVolume 7.6 s: the median of one attach with one in flight
//     measured by the vsphere-csi-driver performance team
//     (kubernetes-sigs/vsphere-csi-driver PR #4216, csibench
//     wl5_detachvm-attachvm: 7.646 s; 9.3 s with 16 and 59 s with 64 in
//     flight, which the per-VM queue of reconfigurations reproduces by
//     itself rather than by this figure). Nearly all of it is the node VM's
//     reconfiguration, so ReconfigVM_Task gets the same.
//   - CnsDetachVolume: no published figure; the same VM reconfiguration as
//     an attach, so the same 7.6 s.
//   - CnsCreateVolume 420 ms: PR #2788 measured 2.353 created PVCs a
//     second with one thread (so about 0.42 s each, end to end).
//   - CnsDeleteVolume, CnsExtendVolume, CnsCreateSnapshots,
//     CnsDeleteSnapshots, CnsReconfigVolumePolicy: no published figures;
//     taken as a create (a disk file made, grown or removed on the
//     datastore and a CNS database record): 420 ms to 1 s.
//   - Queries answer from CNS's database and plain vCenter calls from
//     vpxd's memory: no published figures; 20–150 ms assumed.
//   - MigrateVM_Task 15 s (a vMotion, as DRS runs it): assumed, derived
//     from what vMotion copies: a VM's memory, 8–16 GB, over a 10 GbE
//     vMotion network (vSphere's documented limit is 8 concurrent vMotions
//     per host on 10 GbE, 250 Mbps each at the least) takes 10–20 s; no
//     published figure for a typical one was found.
//   - RelocateVM_Task 90 s (a Storage vMotion of a VM's files): 60 GB at
//     the 500–700 MB/s Broadcom KB 431479 reports between datastores of
//     different types; the same type, with VAAI, is faster, a bigger VM
//     slower.
//   - CreateSnapshot_Task 3 s, RemoveSnapshot_Task 20 s: assumed. Taking
//     a snapshot without memory stuns the VM for well under a second and
//     makes delta files; removing one consolidates what the delta took in
//     meanwhile, which takes time with its size.
//   - PowerOnVM_Task 5 s, PowerOffVM_Task 3 s: assumed.
//
// They show the shape of things (what waits on what), not any one
// installation; later entries of a spec override them
// ("realistic,CnsCreateVolume=4s").
var Realistic = map[string]time.Duration{
	"CnsCreateVolume":          420 * time.Millisecond,
	"CnsDeleteVolume":          420 * time.Millisecond,
	"CnsAttachVolume":          7600 * time.Millisecond,
	"CnsDetachVolume":          7600 * time.Millisecond,
	"ReconfigVM_Task":          7600 * time.Millisecond,
	"CnsExtendVolume":          time.Second,
	"CnsCreateSnapshots":       time.Second,
	"CnsDeleteSnapshots":       time.Second,
	"CnsReconfigVolumePolicy":  time.Second,
	"CnsUpdateVolumeMetadata":  150 * time.Millisecond,
	"CnsQueryVolume":           150 * time.Millisecond,
	"CnsQueryAllVolume":        150 * time.Millisecond,
	"CnsQueryVolumeInfo":       150 * time.Millisecond,
	"CnsQuerySnapshots":        150 * time.Millisecond,
	"RetrieveProperties":       30 * time.Millisecond,
	"RetrievePropertiesEx":     30 * time.Millisecond,
	"CreatePropertyCollector":  20 * time.Millisecond,
	"CreateFilter":             30 * time.Millisecond,
	"CreateContainerView":      30 * time.Millisecond,
	"PbmCheckRequirements":     100 * time.Millisecond,
	"PbmCheckCompatibility":    100 * time.Millisecond,
	"PbmQueryProfile":          50 * time.Millisecond,
	"PbmRetrieveContent":       50 * time.Millisecond,
	"PbmQueryAssociatedEntity": 50 * time.Millisecond,
	"Login":                    300 * time.Millisecond,
	"MigrateVM_Task":           15 * time.Second,
	"RelocateVM_Task":          90 * time.Second,
	"CreateSnapshot_Task":      3 * time.Second,
	"RemoveSnapshot_Task":      20 * time.Second,
	"PowerOnVM_Task":           5 * time.Second,
	"PowerOffVM_Task":          3 * time.Second,
}

// ParseLatency reads a latency spec: "METHOD=DURATION[,METHOD=DURATION...]"
// with SOAP method names and Go durations, "realistic" (the preset above,
// which later entries override), and "jitter=FRACTION" or "jitter=N%".
// "" and "none" are no latency.
func ParseLatency(spec string) (Latency, error) {
	l := Latency{Methods: map[string]time.Duration{}}
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return l, nil
	}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case item == "realistic":
			for m, d := range Realistic {
				l.Methods[m] = d
			}
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		if !ok {
			return Latency{}, fmt.Errorf("latency %q: want METHOD=DURATION, realistic or jitter=FRACTION", item)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "jitter" {
			j, err := parseFraction(val)
			if err != nil {
				return Latency{}, fmt.Errorf("latency %q: %w", item, err)
			}
			l.Jitter = j
			continue
		}
		if !validMethodName(key) {
			return Latency{}, fmt.Errorf("latency %q: %q is not a SOAP method name", item, key)
		}
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return Latency{}, fmt.Errorf("latency %q: want a duration such as 3s or 250ms", item)
		}
		l.Methods[key] = d
	}
	return l, nil
}

func parseFraction(s string) (float64, error) {
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("jitter %q is not a number", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f >= 1 {
		return 0, fmt.Errorf("jitter %q must be at least 0 and below 100%%", s)
	}
	return f, nil
}

func validMethodName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// of is the duration of one call of method, with jitter.
func (l Latency) of(method string) time.Duration {
	d := l.Methods[method]
	if d <= 0 || l.Jitter <= 0 {
		return d
	}
	f := 1 + l.Jitter*(2*rand.Float64()-1) //nolint:gosec // jitter, not security
	return time.Duration(float64(d) * f)
}

// String is the spec ParseLatency reads back.
func (l Latency) String() string {
	var parts []string
	for _, m := range sortedKeys(l.Methods) {
		parts = append(parts, m+"="+l.Methods[m].String())
	}
	sort.Strings(parts)
	if l.Jitter > 0 {
		parts = append(parts, "jitter="+strconv.FormatFloat(l.Jitter, 'f', -1, 64))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// clone copies l so that the copy can be handed out.
func (l Latency) clone() Latency {
	out := Latency{Methods: make(map[string]time.Duration, len(l.Methods)), Jitter: l.Jitter}
	for k, v := range l.Methods {
		out.Methods[k] = v
	}
	return out
}
