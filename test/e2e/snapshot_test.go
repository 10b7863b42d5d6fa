package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSnapshotRestoreClone follows deploy/examples/snapshot.yaml and
// clone.yaml as a user would: the seed's claim gets a file, `kubectl apply`
// of the snapshot example makes a
// VolumeSnapshot (a CNS snapshot) and a claim restored from it; the source
// is then overwritten. The restored claim holds the data of the snapshot's
// moment, not what came after; a clone holds what came after; deleting the
// VolumeSnapshot deletes the CNS snapshot, and then the source can go too.
func TestSnapshotRestoreClone(t *testing.T) {
	t.Parallel()
	vc := connectVCenter(t)
	const (
		claim      = "persistent-vmdk"
		snapshot   = "persistent-vmdk-snap"
		restored   = "persistent-vmdk-restored"
		cloneClaim = "persistent-vmdk-clone"
	)
	example := filepath.Join(env.root, "deploy/examples/snapshot.yaml")
	cleanupPVC(t, claim)
	cleanupPVC(t, restored)
	t.Cleanup(func() {
		_, _ = kubectl(context.Background(), "delete", "--ignore-not-found", "--wait=false", "volumesnapshot", snapshot)
	})
	mustKubectl(t, "apply", "-f", filepath.Join(env.root, "deploy/examples/pvc.yaml"))
	src := waitBound(t, claim)
	srcID := src.Spec.CSI.VolumeHandle

	first := fmt.Sprintf("before the snapshot, %s", time.Now().Format(time.RFC3339Nano))
	cleanupPod(t, "snap-writer-1")
	runPod(t, podObject("snap-writer-1", claim, fmt.Sprintf(`set -e; echo %q > /data/f; sync`, first), false))
	deletePod(t, "snap-writer-1", src.Name)

	mustKubectl(t, "apply", "-f", example)
	var content, handle string
	eventually(t, 2*time.Minute, "VolumeSnapshot "+snapshot+" readyToUse", func(ctx context.Context) (bool, string, error) {
		out, err := kubectl(ctx, "get", "volumesnapshot", snapshot, "-o",
			`jsonpath={.status.readyToUse} {.status.boundVolumeSnapshotContentName} {.status.error.message}`)
		if err != nil {
			return false, out, nil
		}
		f := strings.Fields(out)
		if len(f) >= 2 {
			content = f[1]
		}
		return len(f) >= 2 && f[0] == "true", "status: " + out + "; events: " + eventsOf(ctx, "VolumeSnapshot", snapshot), nil
	})
	handle = strings.TrimSpace(mustKubectl(t, "get", "volumesnapshotcontent", content, "-o", "jsonpath={.status.snapshotHandle}"))
	volID, snapID, ok := strings.Cut(handle, "+")
	if !ok || volID != srcID {
		t.Fatalf("snapshot handle %q: want <source volume %s>+<CNS snapshot ID>", handle, srcID)
	}
	ids, err := vc.snapshotIDs(t.Context(), srcID)
	if err != nil || !contains(ids, snapID) {
		t.Fatalf("CNS snapshots of %s: %v (err %v), want %s among them", srcID, ids, err, snapID)
	}
	t.Logf("VolumeSnapshot %s -> content %s -> CNS snapshot %s of volume %s", snapshot, content, snapID, srcID)

	// The source moves on after the snapshot.
	cleanupPod(t, "snap-writer-2")
	runPod(t, podObject("snap-writer-2", claim, `set -e; echo "after the snapshot" > /data/f; echo more > /data/g; sync`, false))
	deletePod(t, "snap-writer-2", src.Name)

	rpv := waitBound(t, restored)
	if rpv.Spec.CSI.VolumeHandle == srcID {
		t.Fatalf("restored claim bound to the source volume %s", srcID)
	}
	cleanupPod(t, "snap-reader")
	runPod(t, podObject("snap-reader", restored, fmt.Sprintf(`set -e
got="$(cat /data/f)"; [ "$got" = %q ] || { echo "restored /data/f: $got"; exit 1; }
[ ! -e /data/g ] || { echo "restored volume has /data/g, written after the snapshot"; exit 1; }`, first), false))
	deletePod(t, "snap-reader", rpv.Name)
	cleanupPod(t, "snap-source-reader")
	runPod(t, podObject("snap-source-reader", claim, `set -e; [ "$(cat /data/f)" = "after the snapshot" ]; [ -e /data/g ]`, false))
	deletePod(t, "snap-source-reader", src.Name)
	t.Logf("restored volume %s holds the snapshot's data; the source holds what came after", rpv.Spec.CSI.VolumeHandle)

	deletePVC(t, restored, rpv.Name)

	// deploy/examples/clone.yaml: a clone holds the source as it is now, and
	// the driver's transient snapshot is gone once the clone exists.
	cleanupPVC(t, cloneClaim)
	mustKubectl(t, "apply", "-f", filepath.Join(env.root, "deploy/examples/clone.yaml"))
	cpv := waitBound(t, cloneClaim)
	if id := cpv.Spec.CSI.VolumeHandle; id == srcID || id == rpv.Spec.CSI.VolumeHandle {
		t.Fatalf("clone bound to an existing volume %s", id)
	}
	cleanupPod(t, "clone-reader")
	runPod(t, podObject("clone-reader", cloneClaim, `set -e; [ "$(cat /data/f)" = "after the snapshot" ]; [ "$(cat /data/g)" = more ]`, false))
	deletePod(t, "clone-reader", cpv.Name)
	if ids, err := vc.snapshotIDs(t.Context(), srcID); err != nil || len(ids) != 1 || ids[0] != snapID {
		t.Errorf("CNS snapshots of %s after the clone: %v (err %v), want only the VolumeSnapshot's %s", srcID, ids, err, snapID)
	}
	t.Logf("clone %s holds the source's current data", cpv.Spec.CSI.VolumeHandle)
	deletePVC(t, cloneClaim, cpv.Name)
	mustKubectl(t, "delete", "volumesnapshot", snapshot, "--wait=true", "--timeout=2m")
	eventually(t, time.Minute, "VolumeSnapshotContent "+content+" and CNS snapshot "+snapID+" gone", func(ctx context.Context) (bool, string, error) {
		if out, err := kubectl(ctx, "get", "volumesnapshotcontent", content, "--ignore-not-found", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
			return false, "content still there: " + out, nil
		}
		ids, err := vc.snapshotIDs(ctx, srcID)
		if err != nil {
			return false, "", err
		}
		return !contains(ids, snapID), fmt.Sprintf("CNS snapshots of %s: %v", srcID, ids), nil
	})
	deletePVC(t, claim, src.Name)
	if v, err := vc.volume(t.Context(), srcID); err != nil || v != nil {
		t.Errorf("CNS volume %s after its PVC was deleted: found %v, err %v", srcID, v != nil, err)
	}
}
