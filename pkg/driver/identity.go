package driver

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"
)

// GetPluginInfo names the driver and its version.
func (d *Driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: Name, VendorVersion: d.opts.Version}, nil
}

// GetPluginCapabilities says which services this process offers.
func (d *Driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	var caps []*csi.PluginCapability
	for _, s := range PluginServices {
		switch {
		case s == csi.PluginCapability_Service_CONTROLLER_SERVICE && !d.opts.serves(ModeController):
			continue
		case s == csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS && !d.topologyOn():
			continue
		}
		caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{
			Service: &csi.PluginCapability_Service{Type: s},
		}})
	}
	// CNS grows a disk while it is attached (expand.go).
	caps = append(caps, &csi.PluginCapability{Type: &csi.PluginCapability_VolumeExpansion_{
		VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE},
	}})
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe says the driver is alive: it answers. It does not depend on
// vCenter: the livenessprobe sidecar (and kubelet after it) restarts a
// plugin whose Probe is not ready, and restarting the controller because
// vCenter is away would only kill the operations it is carrying on (they
// settle when vCenter is back). Whether vCenter is usable is readiness
// (Ready, served at /readyz).
func (d *Driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// Ready says whether the driver can do its work now: in controller mode,
// whether the vCenter session is usable (no vCenter call: its health is
// known already).
func (d *Driver) Ready(ctx context.Context) error {
	if d.opts.serves(ModeController) {
		if err := d.vc.Healthy(ctx); err != nil {
			klog.V(2).InfoS("Not ready: vCenter session not usable", "err", err)
			return err
		}
	}
	return nil
}
