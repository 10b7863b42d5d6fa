// Package harness is the contract between hack/e2e.sh and the tests of
// test/e2e: what the script started, written as data. The script writes
// $E2E_DIR/cluster.json (a Cluster) when the cluster is up and one record
// per process it starts, $E2E_DIR/procs/NAME.json (a Process); the tests
// read both through this package only, and a test that restarts a process
// starts it again from its recorded argument list, unchanged, and records
// the new PID in the same format, so that the teardown stops it.
package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNoProcess: no record of that name, or its process is not running.
var ErrNoProcess = errors.New("no such process")

// Cluster is cluster.json: where everything the script started is.
type Cluster struct {
	Dir        string  `json:"dir"`        // $E2E_DIR: state, logs, records
	Root       string  `json:"root"`       // the repository
	Bin        string  `json:"bin"`        // kubectl, helm, the sidecars
	Images     string  `json:"images"`     // the OCI archives imported into every node
	Kubeconfig string  `json:"kubeconfig"` // admin
	APIServer  string  `json:"apiServer"`  // https://127.0.0.1:PORT
	Logs       string  `json:"logs"`       // each process's NAME.log, the tests' output
	Procs      string  `json:"procs"`      // each process's NAME.json
	KubeletDir string  `json:"kubeletDir"` // the same path on every node (a mount namespace each for the others)
	Identity   string  `json:"identity"`   // under KubeletDir: dmi/product_serial and by-id of the node VM a node plays
	PodLogs    string  `json:"podLogs"`    // node 0's kubelet podLogsDir
	VCenter    VCenter `json:"vcenter"`
	Driver     Driver  `json:"driver"`
	Nodes      []Node  `json:"nodes"` // node 0 first, then the spare nodes (started later, tainted)
}

// VCenter is the embedded vCenter the script started.
type VCenter struct {
	URL     string `json:"url"`     // its SDK
	Control string `json:"control"` // host:port of its control endpoint (pkg/sim/lab_control.go)
	Dir     string `json:"dir"`     // its state
	Config  string `json:"config"`  // the csi-vsphere.conf it wrote
}

// Driver is where the driver's host processes serve CSI.
type Driver struct {
	ControllerSocket string `json:"controllerSocket"`
	NodeSocket       string `json:"nodeSocket"`
}

// Node is one node of the cluster and the node VM it plays.
type Node struct {
	Name      string `json:"name"`
	VM        string `json:"vm"`
	IP        string `json:"ip"`
	Spare     bool   `json:"spare"`     // started for the chart phase, tainted until a test takes it in
	Namespace string `json:"namespace"` // record of the process holding its network and mount namespaces; "" for the host's
	Kubelet   string `json:"kubelet"`   // record of its kubelet
	PodLogs   string `json:"podLogs"`
}

// Process is one record: a process the script (or a test) started.
type Process struct {
	Name    string   `json:"name"`
	PID     int      `json:"pid"`
	Argv    []string `json:"argv"`    // as started, wrappers (nsenter) included: a restart runs it unchanged
	Program string   `json:"program"` // what /proc/PID/cmdline starts with while it is ours
	Log     string   `json:"log"`
	Netns   string   `json:"netns,omitempty"` // the network namespace it runs in, if not the host's
}

// Load reads cluster.json.
func Load(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Kubeconfig == "" || c.Procs == "" || len(c.Nodes) == 0 {
		return nil, fmt.Errorf("%s: no kubeconfig, process records or nodes", path)
	}
	return &c, nil
}

// Node is the node of that name.
func (c *Cluster) Node(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Process reads the record NAME.
func (c *Cluster) Process(name string) (Process, error) {
	data, err := os.ReadFile(filepath.Join(c.Procs, name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return Process{}, fmt.Errorf("%s: %w", name, ErrNoProcess)
	}
	if err != nil {
		return Process{}, err
	}
	var p Process
	if err := json.Unmarshal(data, &p); err != nil {
		return Process{}, fmt.Errorf("record of %s: %w", name, err)
	}
	if p.PID <= 0 || len(p.Argv) == 0 {
		return Process{}, fmt.Errorf("record of %s: no pid or argv", name)
	}
	return p, nil
}

// Running reports whether the recorded PID is alive and still runs the
// recorded program (a PID reused by another process is not ours).
func (p Process) Running() bool {
	if syscall.Kill(p.PID, 0) != nil {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(cmdline), "\x00")
	return p.Program == "" || first == p.Program
}

// Running is the record NAME if its process runs.
func (c *Cluster) Running(name string) (Process, error) {
	p, err := c.Process(name)
	if err != nil {
		return Process{}, err
	}
	if !p.Running() {
		return Process{}, fmt.Errorf("%s (pid %d): %w", name, p.PID, ErrNoProcess)
	}
	return p, nil
}

// Restart starts the process NAME again from its recorded argv, in a
// session of its own, its output appended to its log after a line saying
// why (note), and records the new PID. The caller has stopped the old one.
func (c *Cluster) Restart(name, note string) (Process, error) {
	p, err := c.Process(name)
	if err != nil {
		return Process{}, err
	}
	log, err := os.OpenFile(p.Log, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return Process{}, err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n==== e2e: started again: %s ====\n", note)
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("restart %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	p.PID = cmd.Process.Pid
	if err := c.record(p); err != nil {
		return Process{}, err
	}
	return p, nil
}

// record writes p's record whole or not at all (the teardown may read it meanwhile).
func (c *Cluster) record(p Process) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Procs, "."+p.Name+".json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.Procs, p.Name+".json"))
}
