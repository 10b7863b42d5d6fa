package syncer

import (
	"context"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// Lease is the Lease object that elects the one replica that syncs.
type Lease struct {
	Namespace, Name string
	Identity        string // this process: default hostname_pid
	// Duration, Renew, Retry: client-go's LeaseDuration, RenewDeadline,
	// RetryPeriod; zero: 15 s, 10 s, 2 s (the sidecars' own defaults
	// are 15 s, 10 s, 5 s).
	Duration, Renew, Retry time.Duration
}

// DefaultLeaseName is the syncer's Lease, beside the sidecars' own.
const DefaultLeaseName = "vsphere-csi-syncer"

// RunElected runs run while this process holds the lease, until ctx
// ends: run's context ends when the lease is lost, and the process then
// stands for election again. A new term starts run afresh (the syncer
// reads everything again: what it knew may be stale).
func RunElected(ctx context.Context, client kubernetes.Interface, l Lease, run func(ctx context.Context)) error {
	if l.Identity == "" {
		host, _ := os.Hostname()
		l.Identity = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	if l.Name == "" {
		l.Name = DefaultLeaseName
	}
	if l.Duration == 0 {
		l.Duration, l.Renew, l.Retry = 15*time.Second, 10*time.Second, 2*time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metaOf(l),
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: l.Duration, RenewDeadline: l.Renew, RetryPeriod: l.Retry,
			ReleaseOnCancel: true, Name: l.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					klog.InfoS("Holding the syncer's lease", "lease", l.Namespace+"/"+l.Name, "identity", l.Identity)
					run(ctx)
				},
				OnStoppedLeading: func() {
					klog.InfoS("Not holding the syncer's lease", "lease", l.Namespace+"/"+l.Name, "identity", l.Identity)
				},
				OnNewLeader: func(id string) {
					if id != l.Identity {
						klog.InfoS("Another replica syncs CNS metadata", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election for the syncer: %w", err)
		}
		le.Run(ctx)
	}
	return nil
}

func metaOf(l Lease) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name}
}
