// Command vsphere-csi is the vSphere CNS CSI driver: the controller, the node
// plugin, or both, in one binary. With --simulator it brings its own embedded
// vCenter and talks to it exactly as to a real one.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsphere-csi:", err)
		os.Exit(2)
	}
	if opts.showVersion {
		fmt.Println("vsphere-csi", version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		klog.ErrorS(err, "vsphere-csi stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}
