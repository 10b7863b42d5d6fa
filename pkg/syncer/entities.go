package syncer

import (
	"maps"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Objects is what Kubernetes holds of one volume: its PV, the claim bound
// to it, and the pods that use that claim.
type Objects struct {
	PV   *v1.PersistentVolume
	PVC  *v1.PersistentVolumeClaim
	Pods []*v1.Pod
}

// Desired is the entity metadata CNS should hold for the volume, in this
// cluster: the PV (name, labels); the claim bound to it (name, namespace,
// labels; referring to the PV); each pod that uses the claim and is
// scheduled and not finished (name, namespace; referring to the claim).
// No PV: nothing (the volume is no longer this cluster's in Kubernetes).
// The claim counts only when PV and claim point at each other (a claim
// that was rebound, or a PV released by its claim, shows no claim).
func Desired(o Objects) []vcenter.Entity {
	pv := o.PV
	if pv == nil {
		return nil
	}
	out := []vcenter.Entity{{Kind: vcenter.EntityPV, Name: pv.Name, Labels: copyLabels(pv.Labels)}}
	pvc := o.PVC
	if pvc == nil || !bound(pv, pvc) {
		return out
	}
	out = append(out, vcenter.Entity{
		Kind: vcenter.EntityPVC, Name: pvc.Name, Namespace: pvc.Namespace, Labels: copyLabels(pvc.Labels),
		Refers: &vcenter.EntityRef{Kind: vcenter.EntityPV, Name: pv.Name},
	})
	seen := map[string]bool{}
	for _, pod := range o.Pods {
		if pod.Namespace != pvc.Namespace || !usesClaim(pod, pvc.Name) || !running(pod) || seen[pod.Name] {
			continue
		}
		seen[pod.Name] = true
		out = append(out, vcenter.Entity{
			Kind: vcenter.EntityPod, Name: pod.Name, Namespace: pod.Namespace,
			Refers: &vcenter.EntityRef{Kind: vcenter.EntityPVC, Name: pvc.Name, Namespace: pvc.Namespace},
		})
	}
	return out
}

// bound: the claim names the PV and the PV's claim reference names the
// claim (by UID when it has one).
func bound(pv *v1.PersistentVolume, pvc *v1.PersistentVolumeClaim) bool {
	ref := pv.Spec.ClaimRef
	if ref == nil || pvc.Spec.VolumeName != pv.Name || ref.Name != pvc.Name || ref.Namespace != pvc.Namespace {
		return false
	}
	return ref.UID == "" || ref.UID == pvc.UID
}

// running: scheduled to a node, not finished, not being deleted with its
// containers gone. A pod counts from the moment it has a node: that is
// when the volume is attached for it.
func running(pod *v1.Pod) bool {
	if pod.Spec.NodeName == "" {
		return false
	}
	switch pod.Status.Phase {
	case v1.PodSucceeded, v1.PodFailed:
		return false
	}
	return true
}

// Claims names the claims a pod uses: its persistentVolumeClaim volumes
// and the claims of its generic ephemeral volumes (named pod-volume, as
// Kubernetes makes them).
func Claims(pod *v1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			out = append(out, pod.Name+"-"+v.Name)
		}
	}
	return out
}

func usesClaim(pod *v1.Pod, claim string) bool { return slices.Contains(Claims(pod), claim) }

// copyLabels copies a label map; none is nil (as CNS gives it back).
func copyLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	return maps.Clone(l)
}

// Diff is what turns have (what CNS holds for this cluster) into want:
// the entities to set (new or changed) and those to delete. Entities of
// other clusters are never in have, so never touched.
func Diff(want, have []vcenter.Entity) (set []vcenter.Entity, del []vcenter.EntityRef) {
	held := make(map[vcenter.EntityRef]vcenter.Entity, len(have))
	for _, e := range have {
		held[e.ID()] = e
	}
	wanted := make(map[vcenter.EntityRef]bool, len(want))
	for _, e := range want {
		wanted[e.ID()] = true
		if h, ok := held[e.ID()]; !ok || !h.Equal(e) {
			set = append(set, e)
		}
	}
	for _, e := range have {
		if !wanted[e.ID()] {
			del = append(del, e.ID())
		}
	}
	slices.SortFunc(del, func(a, b vcenter.EntityRef) int {
		return strings.Compare(a.Kind+"/"+a.Namespace+"/"+a.Name, b.Kind+"/"+b.Namespace+"/"+b.Name)
	})
	return set, del
}
