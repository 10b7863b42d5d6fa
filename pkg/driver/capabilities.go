package driver

import "github.com/container-storage-interface/spec/lib/go/csi"

// What the driver advertises, one list per service; the handlers answer
// from them and the chart's tests (test/chart) read them to check that the
// chart deploys the sidecars they need.

// ControllerCapabilities are what ControllerGetCapabilities advertises.
var ControllerCapabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_GET_VOLUME,
	csi.ControllerServiceCapability_RPC_VOLUME_CONDITION,
	csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
}

// needsSnapshots: the capabilities that need CNS snapshots (a clone is
// made through a transient snapshot), left out where vCenter's release
// has none (vcenter.FeatureSnapshots).
func needsSnapshots(c csi.ControllerServiceCapability_RPC_Type) bool {
	switch c {
	case csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT, csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME:
		return true
	}
	return false
}

// NodeCapabilities are what NodeGetCapabilities advertises.
var NodeCapabilities = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
	csi.NodeServiceCapability_RPC_VOLUME_CONDITION,
	csi.NodeServiceCapability_RPC_EXPAND_VOLUME, // with the controller's (expand.go)
	csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
}

// PluginServices are the services GetPluginCapabilities may advertise:
// CONTROLLER_SERVICE where the process serves the controller,
// VOLUME_ACCESSIBILITY_CONSTRAINTS where topology is configured
// (topology.go). Volume expansion is ONLINE (CNS grows an attached disk).
var PluginServices = []csi.PluginCapability_Service_Type{
	csi.PluginCapability_Service_CONTROLLER_SERVICE,
	csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS,
}
