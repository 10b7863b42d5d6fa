package walkthrough

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
)

// Driver is a vsphere-csi process.
type Driver struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// StartDriver runs the driver binary in the given mode against the embedded
// vCenter's config file, as a node plugin of vm when mode serves the node.
// Its log goes to logw.
func StartDriver(ctx context.Context, binary, mode, configPath string, vm sim.NodeVM, dir string, logw io.Writer) (*Driver, error) {
	endpoint := "unix://" + filepath.Join(dir, mode+".sock")
	args := []string{"--mode", mode, "--endpoint", endpoint, "-v", "2"}
	if mode != "node" {
		args = append(args, "--config", configPath)
	}
	if mode != "controller" {
		args = append(args, "--node-id", vm.UUID, "--by-id-dir", vm.ByIDDir)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &Driver{Endpoint: endpoint, cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitForSocket(wait, endpoint); err != nil {
		_ = d.Stop()
		return nil, fmt.Errorf("%s driver did not start: %w", mode, err)
	}
	return d, nil
}

// Stop sends SIGTERM and waits for the process to end (SIGKILL after 20 s).
// Calling it again returns the first answer.
func (d *Driver) Stop() error {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case d.stopErr = <-d.done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			d.stopErr = fmt.Errorf("driver pid %d did not stop on SIGTERM", d.cmd.Process.Pid)
		}
	})
	return d.stopErr
}

// Kill kills the process (SIGKILL), as an OOM kill or a node's loss does,
// and waits for it to be gone.
func (d *Driver) Kill() {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Kill()
		d.stopErr = <-d.done
	})
}

// LoopDevicesOf lists the loop devices backed by files under dir.
func LoopDevicesOf(dir string) ([]string, error) {
	out, err := exec.Command("losetup", "-a").Output()
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, line := range splitLines(string(out)) {
		if containsPath(line, dir) {
			mine = append(mine, line)
		}
	}
	return mine, nil
}

// MountsUnder lists the mount points under dir.
func MountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, line := range splitLines(string(data)) {
		if containsPath(line, dir) {
			mine = append(mine, line)
		}
	}
	return mine, nil
}

// syncWriter lets two processes' output share one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Pid is the driver process's ID.
func (d *Driver) Pid() int { return d.cmd.Process.Pid }
