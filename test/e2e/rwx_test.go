package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// share is a vSAN file share as the embedded vCenter's control endpoint
// lists it (GET /shares).
type share struct {
	VolumeID, Name, Dir string
	AccessPoints        map[string]string
}

func simShares(t *testing.T) []share {
	t.Helper()
	var out []share
	if err := json.Unmarshal(simControl(t, "GET", "/shares", ""), &out); err != nil {
		t.Fatalf("GET /shares: %v", err)
	}
	return out
}

// TestReadWriteMany follows deploy/examples/rwx.yaml: a ReadWriteMany claim
// of the seed's gold-sc, unchanged, binds to a CNS file volume (a vSAN file
// share); two pods running at the same time share one file through it, the
// node mounting the share over NFS; deleting the claim removes the share.
func TestReadWriteMany(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(env.root, "deploy/examples/rwx.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	if !strings.Contains(docs[0], "kind: PersistentVolumeClaim") || !strings.Contains(docs[0], "storageClassName: gold-sc") {
		t.Fatal("deploy/examples/rwx.yaml: want the gold-sc claim first")
	}
	// The example's claim; its Deployment needs a registry image and a pod
	// network, so the test's pods stand in for it.
	const claim = "shared-files"
	cleanupPVC(t, claim)
	kubectlApply(t, docs[0])
	pv := waitBound(t, claim)
	id := pv.Spec.CSI.VolumeHandle
	if !strings.HasPrefix(id, "file:") || pv.Spec.CSI.VolumeAttributes["type"] != "vSphere CNS File Volume" {
		t.Fatalf("PV %s: volume %s, attributes %v: want a CNS file volume", pv.Name, id, pv.Spec.CSI.VolumeAttributes)
	}
	if len(pv.Spec.AccessModes) != 1 || pv.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Errorf("PV access modes %v", pv.Spec.AccessModes)
	}
	sh := shareOf(t, id)
	t.Logf("PV %s: file volume %s, share %s at %s", pv.Name, id, sh.Name, sh.AccessPoints["NFSv4.1"])

	token := shareThroughTwoPods(t, claim, "", "")
	checkShareHolds(t, sh, token)
	deletePod(t, "rwx-writer", pv.Name)
	deletePod(t, "rwx-reader", pv.Name)

	deletePVC(t, claim, pv.Name)
	waitShareGone(t, sh)
}

// shareOf is the vSAN file share of a file volume, as the embedded vCenter
// lists it.
func shareOf(t *testing.T, id string) share {
	t.Helper()
	for _, s := range simShares(t) {
		if s.VolumeID == id {
			return s
		}
	}
	t.Fatalf("no vSAN file share for volume %s: %v", id, simShares(t))
	return share{}
}

// checkShareHolds: the share's directory in the embedded vCenter holds the
// token shareThroughTwoPods wrote.
func checkShareHolds(t *testing.T, sh share, token string) {
	t.Helper()
	if got, err := os.ReadFile(filepath.Join(sh.Dir, "shared.txt")); err != nil || strings.TrimSpace(string(got)) != token {
		t.Errorf("the share's file holds %q (%v), want the token", got, err)
	}
}

// waitShareGone waits for the embedded vCenter to have neither the share
// nor its directory.
func waitShareGone(t *testing.T, sh share) {
	t.Helper()
	id := sh.VolumeID
	eventually(t, time.Minute, "the share of "+id+" gone", func(ctx context.Context) (bool, string, error) {
		for _, s := range simShares(t) {
			if s.VolumeID == id {
				return false, "the embedded vCenter still has the share", nil
			}
		}
		if _, err := os.Stat(sh.Dir); err == nil {
			return false, "the share's directory is still there", nil
		}
		return true, "", nil
	})
}

// shareThroughTwoPods runs two pods of the claim at the same time, on the
// nodes given ("" = where the scheduler puts it): rwx-writer writes a token
// and waits for an answer, rwx-reader, whose /data must be an NFS mount,
// waits for the token and answers. It returns the token when both have
// succeeded; the caller deletes the pods.
func shareThroughTwoPods(t *testing.T, claim, writerNode, readerNode string) string {
	t.Helper()
	token := fmt.Sprintf("written by rwx-writer at %s", time.Now().Format(time.RFC3339Nano))
	cleanupPod(t, "rwx-writer")
	cleanupPod(t, "rwx-reader")
	writer := podObject("rwx-writer", claim, fmt.Sprintf(`set -e
grep " /data " /proc/mounts
echo %q > /data/shared.txt
n=0; while [ ! -f /data/answer.txt ]; do n=$((n+1)); [ $n -lt 180 ] || { echo "no answer"; exit 1; }; sleep 1; done
cat /data/answer.txt`, token), false)
	reader := podObject("rwx-reader", claim, fmt.Sprintf(`set -e
grep " /data " /proc/mounts | grep -q nfs || { echo "/data is not an NFS mount:"; grep " /data " /proc/mounts; exit 1; }
n=0; while [ "$(cat /data/shared.txt 2>/dev/null)" != %q ]; do n=$((n+1)); [ $n -lt 180 ] || { echo "never saw the write"; exit 1; }; sleep 1; done
echo "read by rwx-reader" > /data/answer.txt`, token), false)
	for _, pn := range []struct {
		p    *corev1.Pod
		node string
	}{{writer, writerNode}, {reader, readerNode}} {
		if pn.node != "" {
			pn.p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": pn.node}
		}
	}
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), writer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runPod(t, reader)
	eventually(t, 3*time.Minute, "pod rwx-writer to see the answer and succeed", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, "rwx-writer", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("rwx-writer failed: %s", describePod(ctx, p))
		}
		return p.Status.Phase == corev1.PodSucceeded, describePod(ctx, p), nil
	})
	nodes := map[string]string{}
	for _, name := range []string{"rwx-writer", "rwx-reader"} {
		p, err := env.kube.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = p.Spec.NodeName
	}
	t.Logf("rwx-writer on %s and rwx-reader on %s shared one file", nodes["rwx-writer"], nodes["rwx-reader"])
	for name, want := range map[string]string{"rwx-writer": writerNode, "rwx-reader": readerNode} {
		if want != "" && nodes[name] != want {
			t.Errorf("pod %s ran on %s, want %s", name, nodes[name], want)
		}
	}
	return token
}
