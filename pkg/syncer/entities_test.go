package syncer

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

func testPV(name, claimNS, claim string, uid types.UID, labels map[string]string) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	pv.Spec.CSI = &v1.CSIPersistentVolumeSource{Driver: "csi.vsphere.vmware.com", VolumeHandle: "vol-" + name}
	if claim != "" {
		pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: claimNS, Name: claim, UID: uid}
		pv.Status.Phase = v1.VolumeBound
	}
	return pv
}

func testPVC(ns, name, volume string, uid types.UID, labels map[string]string) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, Labels: labels}}
	pvc.Spec.VolumeName = volume
	return pvc
}

func testPod(ns, name, node string, phase v1.PodPhase, claims ...string) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}}}
	pod.Spec.NodeName = node
	pod.Status.Phase = phase
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: "data-" + c,
			VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return pod
}

var (
	pvRef  = &vcenter.EntityRef{Kind: vcenter.EntityPV, Name: "pv-1"}
	pvcRef = &vcenter.EntityRef{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop"}
)

func TestDesired(t *testing.T) {
	gold := map[string]string{"tier": "gold"}
	cases := []struct {
		name string
		o    Objects
		want []vcenter.Entity
	}{
		{"no PV: nothing", Objects{}, nil},
		{"static PV, no claim", Objects{PV: testPV("pv-1", "", "", "", nil)},
			[]vcenter.Entity{{Kind: vcenter.EntityPV, Name: "pv-1"}}},
		{"bound, with labels, one pod running",
			Objects{PV: testPV("pv-1", "shop", "data", "u1", gold), PVC: testPVC("shop", "data", "pv-1", "u1", map[string]string{"app": "db"}),
				Pods: []*v1.Pod{testPod("shop", "db-0", "node-1", v1.PodRunning, "data")}},
			[]vcenter.Entity{
				{Kind: vcenter.EntityPV, Name: "pv-1", Labels: gold},
				{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop", Labels: map[string]string{"app": "db"}, Refers: pvRef},
				{Kind: vcenter.EntityPod, Name: "db-0", Namespace: "shop", Refers: pvcRef}, // pod labels: not recorded (as upstream)
			}},
		{"two pods (ReadWriteMany on two nodes); one pending unscheduled, one finished, one of another claim",
			Objects{PV: testPV("pv-1", "shop", "data", "u1", nil), PVC: testPVC("shop", "data", "pv-1", "u1", nil),
				Pods: []*v1.Pod{
					testPod("shop", "web-a", "node-1", v1.PodRunning, "data"),
					testPod("shop", "web-b", "node-2", v1.PodPending, "data"), // scheduled, starting: counts
					testPod("shop", "web-c", "", v1.PodPending, "data"),
					testPod("shop", "job-1", "node-1", v1.PodSucceeded, "data"),
					testPod("shop", "other", "node-1", v1.PodRunning, "logs"),
				}},
			[]vcenter.Entity{
				{Kind: vcenter.EntityPV, Name: "pv-1"},
				{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop", Refers: pvRef},
				{Kind: vcenter.EntityPod, Name: "web-a", Namespace: "shop", Refers: pvcRef},
				{Kind: vcenter.EntityPod, Name: "web-b", Namespace: "shop", Refers: pvcRef},
			}},
		{"claim rebound elsewhere: the PV shows no claim",
			Objects{PV: testPV("pv-1", "shop", "data", "u1", nil), PVC: testPVC("shop", "data", "pv-2", "u1", nil)},
			[]vcenter.Entity{{Kind: vcenter.EntityPV, Name: "pv-1"}}},
		{"claim deleted and made again with the same name (another UID): not this PV's",
			Objects{PV: testPV("pv-1", "shop", "data", "u1", nil), PVC: testPVC("shop", "data", "pv-1", "u2", nil)},
			[]vcenter.Entity{{Kind: vcenter.EntityPV, Name: "pv-1"}}},
		{"Retain: claim deleted, PV released", Objects{PV: testPV("pv-1", "shop", "data", "u1", gold)},
			[]vcenter.Entity{{Kind: vcenter.EntityPV, Name: "pv-1", Labels: gold}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Desired(c.o); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Desired:\n got  %+v\n want %+v", got, c.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	pv := vcenter.Entity{Kind: vcenter.EntityPV, Name: "pv-1"}
	pvGold := vcenter.Entity{Kind: vcenter.EntityPV, Name: "pv-1", Labels: map[string]string{"tier": "gold"}}
	pvc := vcenter.Entity{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop", Refers: pvRef}
	pvcOther := vcenter.Entity{Kind: vcenter.EntityPVC, Name: "data2", Namespace: "shop", Refers: pvRef}
	pod := vcenter.Entity{Kind: vcenter.EntityPod, Name: "db-0", Namespace: "shop", Refers: pvcRef}
	cases := []struct {
		name       string
		want, have []vcenter.Entity
		set        []vcenter.Entity
		del        []vcenter.EntityRef
	}{
		{"in step: nothing", []vcenter.Entity{pv, pvc, pod}, []vcenter.Entity{pv, pvc, pod}, nil, nil},
		{"new volume of CreateVolume: PV and claim there, the pod added", []vcenter.Entity{pv, pvc, pod}, []vcenter.Entity{pv, pvc}, []vcenter.Entity{pod}, nil},
		{"label added", []vcenter.Entity{pvGold}, []vcenter.Entity{pv}, []vcenter.Entity{pvGold}, nil},
		{"label removed", []vcenter.Entity{pv}, []vcenter.Entity{pvGold}, []vcenter.Entity{pv}, nil},
		{"pod deleted", []vcenter.Entity{pv, pvc}, []vcenter.Entity{pv, pvc, pod}, nil, []vcenter.EntityRef{pod.ID()}},
		{"rebound to another claim", []vcenter.Entity{pv, pvcOther}, []vcenter.Entity{pv, pvc, pod}, []vcenter.Entity{pvcOther}, []vcenter.EntityRef{pvc.ID(), pod.ID()}},
		{"PV deleted (Retain): everything of this cluster goes", nil, []vcenter.Entity{pv, pvc}, nil, []vcenter.EntityRef{pv.ID(), pvc.ID()}},
		{"reference changed only", []vcenter.Entity{{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop", Refers: &vcenter.EntityRef{Kind: vcenter.EntityPV, Name: "pv-9"}}},
			[]vcenter.Entity{pvc}, []vcenter.Entity{{Kind: vcenter.EntityPVC, Name: "data", Namespace: "shop", Refers: &vcenter.EntityRef{Kind: vcenter.EntityPV, Name: "pv-9"}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set, del := Diff(c.want, c.have)
			if !reflect.DeepEqual(set, c.set) || !reflect.DeepEqual(del, c.del) {
				t.Errorf("Diff:\n set %+v, want %+v\n del %+v, want %+v", set, c.set, del, c.del)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	pod := testPod("shop", "web-0", "n", v1.PodRunning, "data")
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{Ephemeral: &v1.EphemeralVolumeSource{}}},
		v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{}}})
	if got, want := Claims(pod), []string{"data", "web-0-scratch"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Claims = %v, want %v", got, want)
	}
}
