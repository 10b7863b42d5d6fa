package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/kube"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
)

// orphans is `vsphere-csi orphans`: the listing the metadata syncer's
// full sync reports, on demand. Exit status: 0 nothing found, 1 something
// found, 2 it could not tell.
func orphans(args []string) int {
	fs := flag.NewFlagSet("vsphere-csi orphans", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vsphere-csi orphans [--config csi-vsphere.conf] [--kubeconfig FILE]\n\n"+
			"Lists the CNS volumes of the cluster (its cluster-id) that no PersistentVolume names (orphans: their disks\n"+
			"are kept), and the PersistentVolumes of the driver whose CNS volume does not exist. Changes nothing.\n"+
			"A volume being provisioned at that moment shows as an orphan until its PV is made.\n\n")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "/etc/vsphere-csi/csi-vsphere.conf", "path of csi-vsphere.conf")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (empty: the pod's service account)")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r, err := listOrphans(ctx, *configPath, *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsphere-csi orphans:", err)
		return 2
	}
	if len(r.Orphans)+len(r.Missing) > 0 {
		return 1
	}
	return 0
}

func listOrphans(ctx context.Context, configPath, kubeconfig string) (syncer.Report, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return syncer.Report{}, err
	}
	kc, err := kube.Connect(kubeconfig, "vsphere-csi-orphans")
	if err != nil {
		return syncer.Report{}, err
	}
	return app.Orphans(ctx, cfg, kc, os.Stdout)
}
