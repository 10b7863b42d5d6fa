package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
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
// endpoint (cluster.json: vcenter.control) makes its tasks take real
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
	addr := env.cluster.VCenter.Control
	if addr == "" {
		t.Fatal("cluster.json names no control endpoint of the embedded vCenter")
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
// from the argument list hack/e2e.sh recorded for it), the driver first.
func restartController(t *testing.T) {
	t.Helper()
	pod := []string{"csi-controller", "csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"}
	var killed []int
	for _, name := range pod {
		if p, err := env.cluster.Running(name); err == nil {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err == nil {
				killed = append(killed, p.PID)
			}
		}
	}
	for _, pid := range killed {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i, name := range pod {
		p, err := env.cluster.Restart(name, "after a SIGKILL")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("controller pod killed (pids %v) and started again (driver pid %d)", killed, p.PID)
			waitSocket(t, env.cluster.Driver.ControllerSocket)
		}
	}
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
