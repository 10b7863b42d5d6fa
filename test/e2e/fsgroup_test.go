package e2e

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestReadWriteManyFSGroup (issue 23, item 4): a pod's fsGroup on a
// ReadWriteMany share. A pod writes 10,000 files to a vSAN file share; a
// non-root pod without fsGroup and one with fsGroup then mount it. kubelet
// must not walk the share to chgrp and chmod every file (with fsGroupPolicy
// File it does, over NFS, on every mount): every file keeps its group and
// mode. Their start times are logged as figures, not asserted. Then the
// share is root-squashed, as a vSAN admin may set it (allowRoot false): a
// non-root pod writes in its directory (files its own), while root in a pod
// is nobody, as on vSAN File Service.
func TestReadWriteManyFSGroup(t *testing.T) {
	const claim, files = "rwx-fsgroup", 10000
	createPVC(t, pvcObject(claim, "gold-sc", "1Gi", corev1.ReadWriteMany, corev1.PersistentVolumeFilesystem))
	pv := waitBound(t, claim)
	sh := shareOf(t, pv.Spec.CSI.VolumeHandle)
	t.Logf("PV %s: access modes %v, fsType %q, share %s", pv.Name, pv.Spec.AccessModes, pv.Spec.CSI.FSType, sh.Name)

	// Root fills the share and prepares a directory for user 1000 (as an
	// init container would, while root is not squashed).
	fill := podObject("fsg-fill", claim, `set -e
mkdir /data/files /data/app
cd /data/files
i=0; while [ $i -lt 10000 ]; do : > f$i; i=$((i+1)); done
chown 1000:1000 /data/app
ls /data/files | wc -l`, false)
	cleanupPod(t, fill.Name)
	start := time.Now()
	runPodWithin(t, fill, 10*time.Minute) // some 40,000 NFS calls through the FUSE stand-in
	t.Logf("FIGURE: a pod wrote %d files to the share in %.1f s", files, time.Since(start).Seconds())
	deletePod(t, fill.Name)
	before := shareOwnership(t, sh.Dir)
	if before.files < files {
		t.Fatalf("the share holds %d files, want %d", before.files, files)
	}

	plain := startNonRootPod(t, "fsg-plain", claim, sh.Dir, nil)
	group := int64(2000)
	withGroup := startNonRootPod(t, "fsg-group", claim, sh.Dir, &group)
	t.Logf("FIGURE: pod start on a share of %d files: %.1f s without fsGroup, %.1f s with fsGroup %d",
		files, plain.Seconds(), withGroup.Seconds(), group)

	after := shareOwnership(t, sh.Dir)
	if after.withGID[group] > 0 || after.setgid > before.setgid || after.withGID[0] != before.withGID[0] {
		t.Errorf("kubelet walked the share for fsGroup %d: %d of %d files now in group %d (%d setgid directories, %d before); "+
			"ReadWriteMany shares must be left alone (fsGroupPolicy ReadWriteOnceWithFSType)",
			group, after.withGID[group], after.files, group, after.setgid, before.setgid)
	}

	// Root squash, as a vSAN admin sets it; the mounts stay.
	simControl(t, "PUT", "/shares/"+sh.Name+"/permissions", `[{"Ips":"*","Permissions":"READ_WRITE","AllowRoot":false}]`)
	user := podObject("fsg-user", claim, `set -e
echo hello > /data/app/by-user
ls -ln /data/app/by-user
if touch /data/by-user-at-root 2>/dev/null; then echo "user 1000 wrote to the share's root (0755, root's)"; exit 1; fi`, false)
	user.Spec.SecurityContext = nonRoot(&group)
	cleanupPod(t, user.Name)
	runPod(t, user)
	deletePod(t, user.Name)
	if uid, gid := ownerIDs(t, filepath.Join(sh.Dir, "app/by-user")); uid != 1000 || gid != 1000 {
		t.Errorf("the non-root pod's file is %d:%d on the share, want 1000:1000 (its own)", uid, gid)
	}
	root := podObject("fsg-root", claim, `set -e
if touch /data/app/by-root 2>/dev/null; then echo "root was not squashed: it wrote in user 1000's directory"; exit 1; fi
if chgrp 2000 /data/app/by-user 2>/dev/null; then echo "root was not squashed: it changed the group of user 1000's file"; exit 1; fi
echo squashed`, false)
	cleanupPod(t, root.Name)
	runPod(t, root)
	deletePod(t, root.Name)
	if _, gid := ownerIDs(t, filepath.Join(sh.Dir, "app/by-user")); gid != 1000 {
		t.Errorf("user 1000's file is in group %d after squashed root's chgrp, want 1000", gid)
	}

	deletePVC(t, claim, pv.Name)
	waitShareGone(t, sh)
}

// nonRoot is a pod security context of user and group 1000, with the
// fsGroup given (nil: none).
func nonRoot(fsGroup *int64) *corev1.PodSecurityContext {
	id := int64(1000)
	return &corev1.PodSecurityContext{RunAsUser: &id, RunAsGroup: &id, FSGroup: fsGroup}
}

// startNonRootPod starts a pod of user 1000 (and fsGroup) on the claim,
// waits for it to run, deletes it and returns how long it took to start.
// Should kubelet start giving the share's files the fsGroup, the test fails
// there and then: over NFS its walk of 10,000 files takes many minutes.
func startNonRootPod(t *testing.T, name, claim, shareDir string, fsGroup *int64) time.Duration {
	t.Helper()
	p := podObject(name, claim, "ls /data >/dev/null; exec sleep 3600", false)
	p.Spec.SecurityContext = nonRoot(fsGroup)
	cleanupPod(t, name)
	start := time.Now()
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	eventually(t, 3*time.Minute, "pod "+name+" running", func(ctx context.Context) (bool, string, error) {
		if o := shareOwnership(t, shareDir); fsGroup != nil && o.withGID[*fsGroup] > 0 {
			t.Fatalf("kubelet is walking the ReadWriteMany share to give it fsGroup %d (%d of %d files so far): "+
				"the CSIDriver's fsGroupPolicy must leave shares alone (ReadWriteOnceWithFSType)", *fsGroup, o.withGID[*fsGroup], o.files)
		}
		pod, err := env.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		state := describePod(ctx, pod)
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			t.Fatalf("pod %s exited: %s", name, state)
		}
		return len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].State.Running != nil, state, nil
	})
	took := time.Since(start)
	deletePod(t, name)
	return took
}

// runPodWithin is runPod with a longer hang guard.
func runPodWithin(t *testing.T, pod *corev1.Pod, guard time.Duration) {
	t.Helper()
	if _, err := env.kube.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	eventually(t, guard, "pod "+pod.Name+" to run to completion", func(ctx context.Context) (bool, string, error) {
		p, err := env.kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if p.Status.Phase == corev1.PodFailed {
			t.Fatalf("pod %s failed: %s", pod.Name, describePod(ctx, p))
		}
		return p.Status.Phase == corev1.PodSucceeded, string(p.Status.Phase), nil
	})
}

// ownership counts a share's files by group, and its setgid directories.
type ownership struct {
	files, setgid int
	withGID       map[int64]int
}

// shareOwnership reads the share's directory in the embedded vCenter.
func shareOwnership(t *testing.T, dir string) ownership {
	t.Helper()
	o := ownership{withGID: map[int64]int{}}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		o.files++
		o.withGID[int64(info.Sys().(*syscall.Stat_t).Gid)]++
		if e.IsDir() && info.Mode()&os.ModeSetgid != 0 {
			o.setgid++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the share %s: %v", dir, err)
	}
	return o
}

func ownerIDs(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestFSGroupOnDisks: with fsGroupPolicy ReadWriteOnceWithFSType kubelet
// still applies a pod's fsGroup to the disks the driver formats, ReadWriteOnce
// and ReadWriteOncePod alike (kubelet v1.34's hasReadWriteOnce counts both;
// the provisioner gives every PV an fsType): a pod of user 1000 writes to
// the new filesystem's root (root's, 0755, until kubelet gives it the group).
func TestFSGroupOnDisks(t *testing.T) {
	t.Parallel()
	for _, mode := range []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteOncePod} {
		claim := "fsg-disk-" + strings.ToLower(string(mode))
		createPVC(t, pvcObject(claim, "gold-sc", "1Gi", mode, corev1.PersistentVolumeFilesystem))
		pv := waitBound(t, claim)
		group := int64(2000)
		p := podObject(claim, claim, `set -e
echo written > /data/by-user
g=$(stat -c %g /data); [ "$g" = 2000 ] || { echo "/data is in group $g, want the fsGroup 2000"; exit 1; }
stat -c '%A %u:%g' /data /data/by-user`, false)
		p.Spec.SecurityContext = nonRoot(&group)
		cleanupPod(t, p.Name)
		runPod(t, p)
		t.Logf("%s claim (PV fsType %q): a pod of user 1000 with fsGroup %d wrote to the new filesystem", mode, pv.Spec.CSI.FSType, group)
		deletePod(t, p.Name, pv.Name)
		deletePVC(t, claim, pv.Name)
	}
}
