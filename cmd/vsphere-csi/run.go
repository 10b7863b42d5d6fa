package main

import (
	"context"

	"github.com/vsphere-cns/vsphere-csi/pkg/app"
	"github.com/vsphere-cns/vsphere-csi/pkg/driver"
)

func run(ctx context.Context, o options) error {
	return app.Run(ctx, app.Config{
		Mode:              driver.Mode(o.mode),
		Version:           version,
		Endpoint:          o.endpoint,
		ConfigPath:        o.configPath,
		NodeID:            o.nodeID,
		ByIDDir:           o.byIDDir,
		MaxVolumesPerNode: o.maxVolumesPerNode,
		MetricsAddress:    o.metricsAddress,
		Simulator:         o.simulator,
		SimulatorDir:      o.simulatorDir,
		SimulatorNodeVMs:  o.simulatorNodeVMs,
	})
}
