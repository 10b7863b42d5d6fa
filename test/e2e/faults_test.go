package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
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
	claims := createStatefulSet(t, name, n, script)
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
		if n := byClaim[ns+"/"+c]; n != 1 {
			t.Errorf("claim %s has %d CNS volumes, want exactly 1", c, n)
		}
	}

	deleteStatefulSet(t, name, claims, pvs, 4*time.Minute)
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

// simControl calls the embedded vCenter's control endpoint and returns
// its answer.
func simControl(t *testing.T, method, path, body string) []byte {
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
	return out
}

// restartController kills the driver's controller (SIGKILL, as the OOM
// killer or a lost node does) and starts it again, as its pod would be: the
// sidecars beside it exit when their connection to the driver is lost and
// kubelet starts them again, so here all of them go and come back (each
// with the command line hack/e2e.sh started it with), the driver first.
func restartController(t *testing.T) {
	t.Helper()
	pod := []string{"csi-controller", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"}
	var killed []int
	for _, name := range pod {
		if pid, ok := hostProcess(name); ok {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				killed = append(killed, pid)
			}
		}
	}
	for _, pid := range killed {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, name := range pod {
		pid := startHostProcess(t, name)
		if i == 0 {
			t.Logf("controller pod killed (pids %v) and started again (driver pid %d)", killed, pid)
			waitSocket(t, filepath.Join(env.dir, "controller", "csi.sock"))
		}
	}
}

// hostProcess is the PID of a process hack/e2e.sh started, if it runs.
func hostProcess(name string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(env.dir, "pids", name))
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0, false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return pid, true
}

// startHostProcess starts a process again with the command line hack/e2e.sh
// recorded for it, its output appended to its log, and records its PID so
// that the teardown stops it.
func startHostProcess(t *testing.T, name string) int {
	t.Helper()
	cmdFile := filepath.Join(env.dir, "logs", name+".cmd")
	data, err := os.ReadFile(cmdFile)
	if err != nil {
		t.Fatal(err)
	}
	_, line, ok := strings.Cut(strings.TrimSpace(string(data)), ": ")
	if !ok {
		t.Fatalf("%s: %q", cmdFile, data)
	}
	args := strings.Fields(line)
	log, err := os.OpenFile(filepath.Join(env.dir, "logs", name+".log"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	fmt.Fprintf(log, "\n==== e2e: started again after a SIGKILL ====\n")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(env.dir, "pids", name), []byte(fmt.Sprintf("%d %s\n", cmd.Process.Pid, args[0])), 0o644); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// waitSocket waits for a unix socket to accept connections.
func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
