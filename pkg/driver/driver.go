// Package driver holds the CSI servers of the vSphere CNS driver: Identity,
// Controller and Node, their parameter parsing, the error→gRPC-code mapping,
// the in-flight guards and the logging/metrics interceptor.
package driver

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Name is the driver's name, the provisioner of its StorageClasses.
const Name = "csi.vsphere.vmware.com"

// Mode says which CSI services the process serves.
type Mode string

const (
	ModeController Mode = "controller"
	ModeNode       Mode = "node"
	ModeAll        Mode = "all"
)

// Options configure a Driver. cmd/vsphere-csi fills them from flags.
type Options struct {
	Mode    Mode
	Version string
	// NodeID is the node's ID (the VM's BIOS UUID); node mode only.
	NodeID string
	// MaxVolumesPerNode is what NodeGetInfo reports; node mode only.
	MaxVolumesPerNode int64
	// ByIDDir is where the node finds attached disks' wwn-0x<uuid> links
	// (--by-id-dir); "" means /dev/disk/by-id. Node mode only.
	ByIDDir string
	// TopologyCategories are the vSphere tag categories of the topology
	// ([Labels] topology-categories); controller mode (topology.go).
	TopologyCategories []string
	// NodeTopology is this node's segment (category → tag), learned at
	// start; node mode. Empty: the node reports no topology.
	NodeTopology map[string]string
	// MaxSnapshotsPerVolume caps CreateSnapshot per volume
	// (--max-snapshots-per-volume, else csi-vsphere.conf [Snapshot]
	// global-max-snapshots-per-block-volume); 0 means
	// DefaultMaxSnapshotsPerVolume. MaxSnapshotsVSAN and MaxSnapshotsVVOL
	// ([Snapshot] granular-max-...) cap volumes on vSAN and vVols
	// datastores instead, where set.
	MaxSnapshotsPerVolume              int
	MaxSnapshotsVSAN, MaxSnapshotsVVOL int
	// InTreeDatastoreURL is where a translated in-tree StorageClass that
	// names no datastore puts its disks (csi-vsphere.conf's
	// migration-datastore-url); "": wherever placement picks.
	InTreeDatastoreURL string
	// NetPermissions say which NFS clients may mount the file volumes'
	// shares, in order ([NetPermissions] sections); controller mode.
	NetPermissions []vcenter.NetPermission
}

// Driver implements the CSI Identity, Controller and Node services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	opts    Options
	vc      vcenter.Client // nil in node mode
	mounter node.Mounter   // nil in controller mode
	// inflight guards volume names, volume IDs and (volume, node) pairs.
	inflight *inFlight
	// filePubs: the nodes file volumes are published to (file_volumes.go).
	filePubs *publications
	// snapNames: which volume each of the cluster's snapshot names is of
	// (snapnames.go).
	snapNames *snapshotNames
}

// NewDriver wires a Driver. vc is required in controller and all modes,
// mounter in node and all modes.
func NewDriver(opts Options, vc vcenter.Client, mounter node.Mounter) (*Driver, error) {
	switch opts.Mode {
	case ModeController, ModeNode, ModeAll:
	default:
		return nil, fmt.Errorf("mode %q: want controller, node or all", opts.Mode)
	}
	if opts.serves(ModeController) && vc == nil {
		return nil, fmt.Errorf("mode %s needs a vCenter client", opts.Mode)
	}
	if opts.serves(ModeNode) {
		if mounter == nil {
			return nil, fmt.Errorf("mode %s needs a mounter", opts.Mode)
		}
		if opts.NodeID == "" {
			return nil, fmt.Errorf("mode %s needs a node ID", opts.Mode)
		}
	}
	if opts.MaxVolumesPerNode == 0 {
		opts.MaxVolumesPerNode = DefaultMaxVolumesPerNode
	}
	if len(opts.NetPermissions) == 0 {
		opts.NetPermissions = DefaultNetPermissions
	}
	if vc != nil && opts.serves(ModeController) && !vc.About().Has(vcenter.FeatureSnapshots) {
		klog.InfoS("This vCenter has no CNS snapshots (they come with vSphere 7.0 Update 3): snapshots and clones are not offered; "+
			"install the chart with snapshots.enabled=false (csi-snapshotter exits when the driver offers none)", "vcenter", vc.About().String())
	}
	return &Driver{opts: opts, vc: vc, mounter: mounter, inflight: newInFlight(), filePubs: newPublications(), snapNames: newSnapshotNames()}, nil
}

// DefaultMaxVolumesPerNode: 4 PVSCSI controllers × 15 disks, less the OS disk.
const DefaultMaxVolumesPerNode = 59

func (o Options) serves(m Mode) bool { return o.Mode == ModeAll || o.Mode == m }
