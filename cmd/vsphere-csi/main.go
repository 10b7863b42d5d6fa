// Command vsphere-csi is the vSphere CNS CSI driver: the controller, the node
// plugin, or both, in one binary. With --simulator it brings its own embedded
// vCenter and talks to it exactly as to a real one (a binary built with
// -tags simulator, as make build does; the image is built without).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "orphans" {
		os.Exit(orphans(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "doctor" {
		os.Exit(doctorCmd(os.Args[2:]))
	}
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
	err = run(ctx, opts)
	if errors.Is(err, app.ErrConfigChanged) {
		klog.InfoS("Exiting to start again with the new csi-vsphere.conf")
		klog.Flush()
		return
	}
	if err != nil {
		klog.ErrorS(err, "vsphere-csi stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}
