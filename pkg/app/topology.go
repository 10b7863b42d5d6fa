package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// How the node plugin learns its topology segment.
//
// kubelet labels the Node and fills CSINode's topology keys from
// NodeGetInfo once, when the plugin registers, so the segment must be known
// then. The node plugin asks vCenter for it once at start, as upstream's
// does: the same csi-vsphere.conf ([Labels] topology-categories), mounted
// into the node pods when topology is enabled, so the tags in vCenter stay
// the one source an admin edits (no per-node flags or labels to keep in
// step with vSphere). It costs one session and a handful of calls per node
// start, none afterwards. Without the config file (the default node
// DaemonSet) or without categories the node reports no topology, as
// before. A lookup that fails stops the plugin: registering without the
// segment would leave the node out of every zone until it restarts.

const nodeTopologyTimeout = 2 * time.Minute

// nodeConfigPresent says whether a node plugin has a config file to read.
func nodeConfigPresent(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil
}

// topologyCategories are the configured tag categories (none without a config).
func topologyCategories(vcCfg *config.Config) []string {
	if vcCfg == nil {
		return nil
	}
	return vcCfg.TopologyCategories
}

// nodeTopology is the node VM's segment: from the controller's client when
// this process has one (mode all), else from a one-shot lookup.
func nodeTopology(ctx context.Context, vcCfg *config.Config, vc vcenter.Client, nodeID string) (map[string]string, error) {
	cats := topologyCategories(vcCfg)
	if len(cats) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, nodeTopologyTimeout)
	defer cancel()
	var seg map[string]string
	if vc != nil {
		vm, err := vc.NodeVM(ctx, nodeID)
		if err != nil {
			return nil, fmt.Errorf("node topology: %w", err)
		}
		seg = vm.Topology
	} else {
		var err error
		if seg, err = vcenter.NodeTopology(ctx, VCenterOptions(vcCfg), nodeID); err != nil {
			return nil, fmt.Errorf("node topology from vCenter tags (categories %v): %w", cats, err)
		}
	}
	if len(seg) == 0 {
		klog.InfoS("The node VM's host, cluster and datacenter carry no topology tags: the node reports no topology", "nodeID", nodeID, "categories", cats)
	} else {
		klog.InfoS("Node topology", "nodeID", nodeID, "segment", seg)
	}
	return seg, nil
}
