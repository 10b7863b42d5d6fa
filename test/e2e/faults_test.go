package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Issue 11 through Kubernetes: a StatefulSet scaled up to 8 while the
// controller is killed twice, or while vCenter restarts: 8 bound claims,
// exactly 8 CNS volumes, every pod running. The embedded vCenter's control
// endpoint (hack/e2e.sh passes E2E_SIM_CONTROL) makes its tasks take real
// time, so that the failures land while tasks run.

const faultLatency = "CnsCreateVolume=3s,CnsAttachVolume=2s,CnsDetachVolume=2s,CnsDeleteVolume=1s"

func TestControllerKilledDuringScaleUp(t *testing.T) {
	scaleUpThrough(t, "e2e-killed", func(t *testing.T, bound func() int) {
		waitFor(t, func() bool { return bound() >= 1 }, 2*time.Minute)
		restartController(t)
		waitFor(t, func() bool { return bound() >= 4 }, 3*time.Minute)
		restartController(t)
	})
}

func TestVCenterRestartDuringScaleUp(t *testing.T) {
	scaleUpThrough(t, "e2e-vc-restart", func(t *testing.T, bound func() int) {
		waitFor(t, func() bool { return bound() >= 2 }, 2*time.Minute)
		simControl(t, "POST", "/restart?down=15s&tasks=may", "")
		t.Log("the embedded vCenter restarted (15 s down; its running tasks may or may not have happened)")
	})
}

// scaleUpThrough creates a StatefulSet of 8 and runs during while it scales
// up, then checks the outcome and deletes everything.
func scaleUpThrough(t *testing.T, name string, during func(t *testing.T, bound func() int)) {
	simControl(t, "PUT", "/latency", faultLatency)
	t.Cleanup(func() { simControl(t, "PUT", "/latency", "none") })
	const n = 8
	script := "echo \"$POD_NAME\" > /data/id; sync; touch /tmp/ready; exec sleep 100000"
	apps := env.kube.AppsV1().StatefulSets(ns)
	if _, err := apps.Create(t.Context(), statefulSet(name, n, "gold-sc", script), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var claims []string
	for i := range n {
		claims = append(claims, fmt.Sprintf("data-%s-%d", name, i))
	}
	t.Cleanup(func() {
		_ = apps.Delete(context.Background(), name, metav1.DeleteOptions{})
		for _, c := range claims {
			cleanupPVC(t, c)
		}
	})
	start := time.Now()
	bound := func() int {
		list, err := env.kube.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return 0
		}
		k := 0
		for _, c := range list.Items {
			if strings.HasPrefix(c.Name, "data-"+name+"-") && c.Status.Phase == corev1.ClaimBound {
				k++
			}
		}
		return k
	}
	during(t, bound)
	waitReady(t, name, n)
	t.Logf("StatefulSet of %d from zero to all Running in %v, through the failure", n, time.Since(start).Round(time.Second))

	var pvs []string
	for _, c := range claims {
		pvs = append(pvs, waitBound(t, c).Name)
	}
	vc := connectVCenter(t)
	byClaim := map[string]int{}
	res, err := vc.cns.QueryVolume(t.Context(), &cnstypes.CnsQueryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Volumes {
		for _, claim := range pvcNames(&res.Volumes[i]) {
			byClaim[claim]++
		}
	}
	for _, c := range claims {
		if byClaim[c] != 1 {
			t.Errorf("claim %s has %d CNS volumes, want exactly 1", c, byClaim[c])
		}
	}

	if err := apps.Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 4*time.Minute, "StatefulSet pods gone", func(ctx context.Context) (bool, string, error) {
		pods, err := env.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
	for i, c := range claims {
		waitDetached(t, pvs[i])
		deletePVC(t, c, pvs[i])
	}
}

func waitFor(t *testing.T, cond func() bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// simControl calls the embedded vCenter's control endpoint.
func simControl(t *testing.T, method, path, body string) {
	t.Helper()
	addr := os.Getenv("E2E_SIM_CONTROL")
	if addr == "" {
		t.Fatal("E2E_SIM_CONTROL is not set: run through hack/e2e.sh")
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, out)
	}
}

// restartController kills the driver's controller (SIGKILL, as the OOM
// killer or a lost node does) and starts it again with the same command
// line, as its Deployment would: a new process, with nothing in memory.
func restartController(t *testing.T) {
	t.Helper()
	pidFile := filepath.Join(env.dir, "pids", "csi-controller")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(data))
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatalf("%s: %q", pidFile, data)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("the controller (pid %d) is not running: %v", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(50 * time.Millisecond)
	}
	log, err := os.OpenFile(filepath.Join(env.dir, "logs", "csi-controller.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fmt.Fprintf(log, "\n==== e2e: killed pid %d (SIGKILL) and started again ====\n", pid)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d %s\n", cmd.Process.Pid, args[0])), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("controller killed (pid %d) and started again (pid %d)", pid, cmd.Process.Pid)
}
