// Command vsphere-demo tells the getting-started walkthrough against the driver on the
// embedded vCenter: a Gold 5Gi volume is created, attached, formatted,
// mounted, written, detached, attached again with its data, and deleted,
// step by step as a person would want to see it. It needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/test/walkthrough"
)

func main() {
	binary := flag.String("driver", "bin/vsphere-csi", "the vsphere-csi binary to run")
	dir := flag.String("dir", "/tmp/vsphere-csi-demo", "working directory (removed at the end)")
	flag.Parse()
	log.SetOutput(sim.StdlibLogWriter{})
	if err := run(*binary, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

func run(binary, dir string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the embedded vCenter makes loop devices and the node plugin mounts them")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Println("The embedded vCenter starts (govmomi's simulator, made faithful):")
	s, err := sim.Start(ctx, sim.Options{Dir: filepath.Join(dir, "vcenter"), Hypervisor: true})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Print(s.Summary())
	conf := filepath.Join(dir, "csi-vsphere.conf")
	if err := s.WriteConfig(conf, "demo-cluster", false); err != nil {
		return err
	}
	vm := s.NodeVMs()[0]
	logPath := filepath.Join(os.TempDir(), "vsphere-csi-demo-driver.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Printf("\nThe driver starts as its own process with %s (TLS verified by thumbprint), as node plugin of %s; its log: %s\n", conf, vm.Name, logPath)
	d, err := walkthrough.StartDriver(ctx, binary, "all", conf, vm, dir, logf)
	if err != nil {
		return err
	}
	runErr := walkthrough.Run(ctx, walkthrough.Env{
		ControllerEndpoint: d.Endpoint, NodeEndpoint: d.Endpoint,
		Sim: s, Node: vm, WorkDir: filepath.Join(dir, "work"), Out: os.Stdout,
	})
	if err := d.Stop(); err != nil && runErr == nil {
		runErr = fmt.Errorf("driver: %w", err)
	}
	if err := s.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	loops, _ := walkthrough.LoopDevicesOf(dir)
	mounts, _ := walkthrough.MountsUnder(dir)
	if len(loops)+len(mounts) > 0 {
		return fmt.Errorf("left behind: loop devices %v, mounts %v", loops, mounts)
	}
	fmt.Println("\nDone: no loop device, mount or data file is left behind.")
	return nil
}
