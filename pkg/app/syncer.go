package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
	"github.com/vsphere-cns/vsphere-csi/pkg/kube"
	"github.com/vsphere-cns/vsphere-csi/pkg/syncer"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// kubeClient is the controller's Kubernetes client: from --kubeconfig,
// else the pod's service account; nil when there is no Kubernetes API.
func kubeClient(c Config) (kubernetes.Interface, error) {
	client, err := kube.Connect(c.Kubeconfig, "vsphere-csi/"+c.Version)
	if errors.Is(err, kube.ErrNoAPI) {
		return nil, nil
	}
	return client, err
}

// startSyncer runs the metadata syncer (pkg/syncer) in the controller,
// under its own Lease so that one replica syncs; stop ends it and waits.
func startSyncer(ctx context.Context, c Config, kc kubernetes.Interface, vc vcenter.Client, obs vcenter.Observer) (stop func()) {
	switch {
	case !c.MetadataSync:
		klog.InfoS("The metadata syncer is off (--metadata-sync=false): CNS holds the PV and claim names written at CreateVolume only")
		return func() {}
	case kc == nil:
		klog.InfoS("No Kubernetes API (no --kubeconfig, not in a pod): the metadata syncer is off; CNS holds the PV and claim names written at CreateVolume only")
		return func() {}
	}
	ns := c.LeaseNamespace
	if ns == "" {
		if ns = kube.PodNamespace(); ns == "" {
			ns = metav1.NamespaceDefault
		}
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kc.CoreV1().Events("")})
	opts := syncer.Options{
		Driver:           driver.Name,
		FullSyncInterval: c.FullSyncInterval,
		Recorder:         broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "vsphere-csi-syncer"}),
	}
	if o, ok := obs.(syncer.Observer); ok {
		opts.Observer = o
	}
	if o, ok := obs.(interface{ SyncerStarted(version string) }); ok {
		o.SyncerStarted(c.Version)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := syncer.RunElected(ctx, kc, syncer.Lease{Namespace: ns,
			Duration: c.LeaseDuration, Renew: c.RenewDeadline, Retry: c.RetryPeriod}, func(ctx context.Context) {
			s, err := syncer.New(kc, vc, opts)
			if err == nil {
				err = s.Run(ctx)
			}
			if err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "The metadata syncer stopped")
			}
		})
		if err != nil {
			klog.ErrorS(err, "The metadata syncer did not start")
		}
	}()
	return func() {
		cancel()
		<-done
		broadcaster.Shutdown()
	}
}

// Orphans is `vsphere-csi orphans`: with the vCenter of the configuration
// and the cluster's Kubernetes API, it lists the CNS volumes of the cluster
// that no PV names and the PVs whose CNS volume is gone. It changes nothing.
func Orphans(ctx context.Context, vcCfg *config.Config, kc kubernetes.Interface, w io.Writer) (syncer.Report, error) {
	pvs, err := kc.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return syncer.Report{}, fmt.Errorf("list PersistentVolumes: %w", err)
	}
	opts := VCenterOptions(vcCfg)
	opts.UserAgent = "vsphere-csi-orphans"
	opts.Nodes = vcenter.StaticNodes() // no node matters here: none is looked for
	vc, err := vcenter.New(ctx, opts)
	if err != nil {
		return syncer.Report{}, err
	}
	defer func() { _ = vc.Close(context.WithoutCancel(ctx)) }()
	vols, _, err := vc.ListVolumes(ctx, 0, 0)
	if err != nil {
		return syncer.Report{}, err
	}
	listed := map[string]bool{}
	for _, v := range vols {
		listed[v.ID] = true
	}
	var others []string
	for _, pv := range pvs.Items {
		if pv.Spec.CSI != nil && pv.Spec.CSI.Driver == driver.Name && !listed[pv.Spec.CSI.VolumeHandle] {
			others = append(others, pv.Spec.CSI.VolumeHandle)
		}
	}
	exists := map[string]bool{}
	found, err := vc.VolumesByID(ctx, others)
	if err != nil {
		return syncer.Report{}, err
	}
	for _, v := range found {
		exists[v.ID] = true
	}
	r := syncer.Find(vols, pvs.Items, driver.Name, exists)
	return r, WriteReport(w, vcCfg.ClusterID, r)
}

// WriteReport writes the findings as two tables.
func WriteReport(w io.Writer, clusterID string, r syncer.Report) error {
	fmt.Fprintf(w, "cluster %s: %d CNS volumes, %d PVs of %s\n", clusterID, r.Volumes, r.PVs, driver.Name)
	fmt.Fprintf(w, "\nOrphans (CNS volumes of the cluster that no PV names; their disks are kept): %d\n", len(r.Orphans))
	if len(r.Orphans) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "VOLUME ID\tNAME\tDATASTORE\tWITHOUT A PV SINCE\n")
		for _, o := range r.Orphans {
			since := "-"
			if !o.Since.IsZero() {
				since = o.Since.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.VolumeID, o.Name, o.Datastore, since)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\nMissing (PVs whose CNS volume does not exist): %d\n", len(r.Missing))
	if len(r.Missing) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "PV\tVOLUME ID\tCLAIM\n")
		for _, m := range r.Missing {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.PV, m.VolumeID, m.Claim)
		}
		return tw.Flush()
	}
	return nil
}
