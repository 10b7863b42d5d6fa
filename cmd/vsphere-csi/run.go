package main

import (
	"context"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
)

func run(ctx context.Context, o options) error {
	return app.Run(ctx, app.Config{
		Mode:                  driver.Mode(o.mode),
		Version:               version,
		Endpoint:              o.endpoint,
		ConfigPath:            o.configPath,
		NodeID:                o.nodeID,
		DMIDir:                o.dmiDir,
		ByIDDir:               o.byIDDir,
		MaxVolumesPerNode:     o.maxVolumesPerNode,
		MaxSnapshotsPerVolume: o.maxSnapshotsPerVolume,
		MetricsAddress:        o.metricsAddress,
		HealthzAddress:        o.healthzAddress,
		Kubeconfig:            o.kubeconfig,
		NodeUUIDs:             o.nodeUUIDs,
		MetadataSync:          o.metadataSync,
		FullSyncInterval:      o.fullSyncInterval,
		LeaseNamespace:        o.leaseNamespace,
		LeaseDuration:         o.leaseDuration,
		RenewDeadline:         o.renewDeadline,
		RetryPeriod:           o.retryPeriod,

		KubeletRegistrationPath: o.kubeletRegistrationPath,
		PluginRegistrationDir:   o.pluginRegistrationDir,

		Simulator:        o.simulator,
		SimulatorDir:     o.simulatorDir,
		SimulatorNodeVMs: o.simulatorNodeVMs,
		SimulatorLatency: o.simulatorLatency,
	})
}
