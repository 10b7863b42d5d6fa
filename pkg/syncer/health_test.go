package syncer

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

type healthObserver struct{ accessible, inaccessible, calls int }

func (o *healthObserver) MetadataSent(int, bool, []time.Duration) {}
func (o *healthObserver) FullSync(time.Duration, int, error)      {}
func (o *healthObserver) Findings(int, int)                       {}
func (o *healthObserver) VolumeHealth(a, i int) {
	o.accessible, o.inaccessible = a, i
	o.calls++
}

func boundPV(name, handle string, phase v1.PersistentVolumePhase, claimed bool) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
	pv.Spec.CSI = &v1.CSIPersistentVolumeSource{VolumeHandle: handle}
	pv.Status.Phase = phase
	if claimed {
		pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "ns", Name: "pvc-" + name}
	}
	return pv
}

// TestVolumeHealthCounts: bound, claimed PVs count by their CNS volume's
// health as the upstream gauge does (green and yellow accessible; red, no
// health or no volume inaccessible; unknown not counted); unbound PVs and
// PVs whose lookup failed are not counted.
func TestVolumeHealthCounts(t *testing.T) {
	obs := &healthObserver{}
	s := &Syncer{opts: Options{Observer: obs}}
	pvs := map[string]*v1.PersistentVolume{}
	vols := map[string]vcenter.Volume{}
	add := func(handle, health string, phase v1.PersistentVolumePhase, claimed, exists bool) {
		pvs[handle] = boundPV("pv-"+handle, handle, phase, claimed)
		if exists {
			vols[handle] = vcenter.Volume{ID: handle, Health: health}
		}
	}
	add("green", "green", v1.VolumeBound, true, true)
	add("yellow", "yellow", v1.VolumeBound, true, true)
	add("red", "red", v1.VolumeBound, true, true)
	add("none", "", v1.VolumeBound, true, true)
	add("unknown", "unknown", v1.VolumeBound, true, true)
	add("gone", "", v1.VolumeBound, true, false)
	add("unsure", "", v1.VolumeBound, true, false)
	add("released", "green", v1.VolumeReleased, true, true)
	add("available", "red", v1.VolumeAvailable, false, true)
	s.reportHealth(pvs, vols, map[string]bool{"unsure": true})
	if obs.calls != 1 || obs.accessible != 2 || obs.inaccessible != 3 {
		t.Errorf("reported accessible %d, inaccessible %d (%d calls); want 2, 3 (1 call)", obs.accessible, obs.inaccessible, obs.calls)
	}
}
