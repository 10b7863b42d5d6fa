package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster writes a cluster.json and one record as hack/e2e.sh writes them
// (hack/e2e/procs.sh, hack/e2e/cluster.sh) and loads it.
func cluster(t *testing.T, record string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	procs := filepath.Join(dir, "procs")
	if err := os.MkdirAll(procs, 0o755); err != nil {
		t.Fatal(err)
	}
	js := `{"dir": "` + dir + `", "kubeconfig": "` + dir + `/admin.kubeconfig", "procs": "` + procs + `",
  "nodes": [{"name": "e2e-node", "vm": "k8s-node-b-1", "kubelet": "e2e-node-kubelet"},
            {"name": "e2e-node-1", "vm": "k8s-node-1", "spare": true, "namespace": "e2e-node-1-ns"}]}`
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	if record != "" {
		record = strings.ReplaceAll(record, "DIR", dir)
		if err := os.WriteFile(filepath.Join(procs, "p.json"), []byte(record), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadNodes(t *testing.T) {
	c := cluster(t, "")
	n, ok := c.Node("e2e-node-1")
	if !ok || n.VM != "k8s-node-1" || !n.Spare || n.Namespace != "e2e-node-1-ns" {
		t.Errorf("node e2e-node-1: %+v, %v", n, ok)
	}
	if _, err := c.Process("p"); !errors.Is(err, ErrNoProcess) {
		t.Errorf("a process with no record: %v, want ErrNoProcess", err)
	}
}

// TestRestartKeepsArgv: a process is started again from its argument list
// as recorded, an argument with spaces in it one argument still, and its
// new PID is recorded for the teardown.
func TestRestartKeepsArgv(t *testing.T) {
	c := cluster(t, `{"name": "p", "pid": 1, "program": "sleep", "log": "DIR/p.log",
  "argv": ["/bin/sh", "-c", "printf '[%s] [%s]\\n' \"$1\" \"$2\"; exec sleep 60", "sh", "two words", "it's"]}`)
	p, err := c.Restart("p", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.PID, syscall.SIGKILL) })
	again, err := c.Process("p")
	if err != nil || again.PID != p.PID || again.PID == 1 {
		t.Fatalf("record after the restart: %+v, %v (started pid %d)", again, err, p.PID)
	}
	deadline := time.Now().Add(time.Minute) // a hang guard
	var log []byte
	for !strings.Contains(string(log), "[two words] [it's]") || !again.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("log %q, running %v", log, again.Running())
		}
		time.Sleep(20 * time.Millisecond)
		log, _ = os.ReadFile(again.Log)
	}
	if _, err := c.Running("p"); err != nil {
		t.Errorf("Running: %v", err)
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for again.Running() {
		if time.Now().After(deadline) {
			t.Fatal("still running after SIGKILL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Running("p"); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Running after SIGKILL: %v, want ErrNoProcess", err)
	}
}
