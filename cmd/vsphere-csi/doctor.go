package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/doctor"
	"github.com/vsphere-cns/vsphere-csi/pkg/kube"
)

// Exit status of `vsphere-csi doctor`.
const (
	doctorHealthy  = 0
	doctorProblems = 1 // at least one check found a problem
	doctorCantTell = 2 // bad flags or configuration, vCenter or the Kubernetes API unreachable
)

// doctorCmd is `vsphere-csi doctor`: docs/DOCTOR.md.
func doctorCmd(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runDoctor(ctx, args, os.Stdout, os.Stderr, func(kubeconfig string) (kubernetes.Interface, error) {
		return kube.Connect(kubeconfig, "vsphere-csi-doctor")
	})
}

// runDoctor parses the flags, checks and writes the findings; connect
// makes the Kubernetes client (tests pass a fake one).
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer,
	connect func(kubeconfig string) (kubernetes.Interface, error)) int {
	fs := flag.NewFlagSet("vsphere-csi doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vsphere-csi doctor [--config csi-vsphere.conf] [--kubeconfig FILE] [--output text|json]\n\n"+
			"Checks what makes volumes fail later, a line per check and object (OK, or PROBLEM with how to fix it):\n"+
			"vCenter's certificate and the login, VMware's documented privileges on each object, each StorageClass's\n"+
			"policy, datastores and free space, every node's VM (the VM its node ID names, disk.EnableUUID, hardware\n"+
			"version, PVSCSI controllers, free SCSI units, topology tags), vSAN File Service for ReadWriteMany classes.\n"+
			"Only reads: nothing changes in vCenter or Kubernetes. Exit status: 0 no problem, 1 a problem, 2 it could not check.\n\n")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "/etc/vsphere-csi/csi-vsphere.conf", "path of csi-vsphere.conf")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (empty: the pod's service account)")
	output := fs.String("output", "text", "text (a line per check) or json (an array of {check, object, ok, problem, fix, detail})")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (exit status 2)")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return doctorHealthy
		}
		return doctorCantTell
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "vsphere-csi doctor: --output %q: use text or json\n", *output)
		return doctorCantTell
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "vsphere-csi doctor:", err)
		return doctorCantTell
	}
	kc, err := connect(*kubeconfig)
	if err != nil {
		fmt.Fprintln(stderr, "vsphere-csi doctor:", err)
		return doctorCantTell
	}
	findings, runErr := doctor.Run(ctx, app.VCenterOptions(cfg), kc)
	if *output == "json" {
		err = doctor.WriteJSON(stdout, findings)
	} else {
		err = doctor.WriteText(stdout, findings)
	}
	if err == nil {
		err = runErr
	}
	if err != nil {
		fmt.Fprintln(stderr, "vsphere-csi doctor: could not check:", err)
		return doctorCantTell
	}
	if doctor.Problems(findings) > 0 {
		return doctorProblems
	}
	return doctorHealthy
}
