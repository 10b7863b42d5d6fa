// Package vcenter is everything the driver says to vCenter (CNS, SPBM, VIM),
// behind one small interface in the driver's own types. govmomi types never
// cross this interface; vCenter faults become the sentinel errors below, once.
package vcenter

import (
	"context"
	"errors"
	"time"
)

// Client is what the CSI controller needs from vCenter.
type Client interface {
	// Healthy reports whether the session is usable (nil) or why not.
	// It answers from state the client already has: no round trip.
	Healthy(ctx context.Context) error
	// About is vCenter's release, read at login (no round trip): the
	// driver offers only the features it has (Release.Has).
	About() Release

	// Policies lists the storage policies (SPBM profiles) vCenter has.
	Policies(ctx context.Context) ([]Policy, error)
	// PolicyByName resolves a storage policy name; ErrPolicyNotFound when
	// vCenter has no policy of that name (the error message lists the ones
	// that exist).
	PolicyByName(ctx context.Context, name string) (Policy, error)

	// Datastores lists the datastores of the configured datacenters, each
	// annotated with whether it is reachable from every node VM and, when
	// policyID is not empty, whether SPBM finds it compatible with that policy.
	Datastores(ctx context.Context, policyID string) ([]Datastore, error)

	// FileShareSupport says, per datastore ID, whether vSAN File Service
	// can put a file volume's share there ("") or why not (not vSAN, File
	// Service off on its cluster). Read when asked and kept a minute;
	// fresh reads it again now (file_volumes.go).
	FileShareSupport(ctx context.Context, fresh bool) (map[string]string, error)

	// CreateVolume creates a VMDK-backed CNS block volume (or, with
	// spec.File, a file volume: a vSAN file share) on the first of
	// spec.DatastoreIDs that takes it, exactly once per name: the caller
	// looks the name up first (FindVolumeByName); CreateVolume looks again
	// whenever an earlier attempt may be making it (volumes.go) and then
	// returns that volume (Existing).
	CreateVolume(ctx context.Context, spec CreateSpec) (Volume, error)
	// DeleteVolume deletes the CNS volume and its disk. ErrVolumeNotFound when
	// it does not exist; ErrVolumeInUse while it is attached; ErrHasSnapshots
	// while it has snapshots other than clones' transient ones (which it
	// deletes).
	DeleteVolume(ctx context.Context, volumeID string) error
	// DropCloneLeftovers deletes the transient snapshots that clones named
	// name ("" for any clone) left on their source volume, an attempt
	// interrupted before its last step (snapshots.go). Best effort: failures
	// are logged. It returns how many other snapshots the volume has (-1
	// when it could not tell).
	DropCloneLeftovers(ctx context.Context, volumeID, name string) int
	// Volume returns one volume; ErrVolumeNotFound when it does not exist.
	Volume(ctx context.Context, volumeID string) (Volume, error)
	// FindVolumeByName returns the volume of this cluster with that name;
	// ErrVolumeNotFound when there is none.
	FindVolumeByName(ctx context.Context, name string) (Volume, error)
	// ListVolumes pages through this cluster's volumes in a stable order.
	// offset is where the page starts; next is 0 when there is no more.
	ListVolumes(ctx context.Context, offset, limit int64) (page []Volume, next int64, err error)

	// AttachVolume attaches the volume to the node VM with that BIOS UUID and
	// returns the attached disk's UUID. Already attached to that VM: success,
	// same UUID. Attached to another VM: ErrVolumeInUse. Unknown VM:
	// ErrNodeNotFound; unknown volume: ErrVolumeNotFound.
	AttachVolume(ctx context.Context, volumeID, nodeUUID string) (diskUUID string, err error)
	// DetachVolume detaches the volume from the node VM. Not attached, or the
	// VM no longer exists: success.
	DetachVolume(ctx context.Context, volumeID, nodeUUID string) error

	// ChangeVolumePolicy changes the volume's storage policy in place
	// (CnsReconfigVolumePolicy; the volume stays on its datastore).
	// ErrVolumeNotFound; ErrPolicyIncompatible when the volume's datastore
	// does not satisfy the policy (the message names the datastore).
	ChangeVolumePolicy(ctx context.Context, volumeID string, policy Policy) error
	// RegisterDisk makes an existing first-class disk a CNS volume of this
	// cluster under that name (CnsCreateVolume with BackingDiskId), for
	// statically provisioned volumes. A disk that already is a CNS volume:
	// success, that volume. No disk with that ID: ErrVolumeNotFound.
	RegisterDisk(ctx context.Context, diskID, name string) (Volume, error)
	// CreateInTreeDisk makes a VMDK at a datastore path, as the in-tree
	// vSphere plugin did (format: DiskFormats); one already there is
	// success. RegisterInTreeDisk makes such a VMDK a CNS volume of this
	// cluster without moving it (BackingDiskUrlPath); one that already is
	// a CNS volume: that volume; no such disk: ErrVolumeNotFound (intree.go).
	CreateInTreeDisk(ctx context.Context, path DiskPath, capacityBytes int64, format string) error
	RegisterInTreeDisk(ctx context.Context, spec InTreeSpec) (Volume, error)

	// ExtendVolume grows the volume to capacityBytes (CnsExtendVolume; the
	// disk grows while attached). ErrVolumeNotFound. snapshots.go.
	ExtendVolume(ctx context.Context, volumeID string, capacityBytes int64) error
	// CreateSnapshot takes a CNS snapshot of the volume, exactly once per
	// description (as CreateVolume per name); ErrVolumeNotFound.
	CreateSnapshot(ctx context.Context, volumeID, description string) (Snapshot, error)
	// DeleteSnapshot deletes one snapshot; ErrSnapshotNotFound when the
	// volume or the snapshot does not exist.
	DeleteSnapshot(ctx context.Context, volumeID, snapshotID string) error
	// Snapshots pages through the snapshots the filter selects (offset and
	// next as in ListVolumes; limit <= 0: all). Unknown IDs select nothing.
	Snapshots(ctx context.Context, f SnapshotFilter, offset, limit int64) (page []Snapshot, next int64, err error)

	// UpdateMetadata writes this cluster's entity metadata of volumes
	// (the PV, claim and pods the vSphere Client shows), several volumes
	// per call; failed holds the volumes CNS refused, each with its error
	// (metadata.go).
	UpdateMetadata(ctx context.Context, updates []MetadataUpdate) (failed map[string]error, err error)
	// VolumesByID returns those of the volumes that exist, of any cluster.
	VolumesByID(ctx context.Context, ids []string) ([]Volume, error)

	// NodeVM finds a node VM by its BIOS UUID; ErrNodeNotFound when none.
	NodeVM(ctx context.Context, nodeUUID string) (NodeVM, error)

	// SetCredentials takes new credentials (a rotated Secret): the next
	// login uses them, even when vCenter refused the old ones too often.
	SetCredentials(user, password string)

	// Close stops background work and logs out.
	Close(ctx context.Context) error
}

// Policy is a vSphere storage policy (an SPBM profile).
type Policy struct {
	ID   string
	Name string
}

// Datastore is a datastore as placement sees it.
type Datastore struct {
	ID            string // managed object ID, e.g. "datastore-42"; opaque to callers
	Name          string
	URL           string // summary.url, what StorageClasses name in datastoreurl
	CapacityBytes int64
	FreeBytes     int64
	// Reachable is true when the datastore is mounted and accessible on every
	// host that runs a node VM; Unreachable names the node VMs that can't see it.
	Reachable   bool
	Unreachable []string
	// Compatible is set only when a policy was given.
	Compatible bool
	// Incompatible says why SPBM rejected it (empty when compatible).
	Incompatible string
	// Topology lists the segments (tag category → tag) in which the
	// datastore is reachable from the hosts that run VMs; empty when no
	// topology categories are configured (topology.go).
	Topology []map[string]string
}

// CreateSpec asks for a new CNS block volume.
type CreateSpec struct {
	Name          string
	CapacityBytes int64    // a whole number of MiB
	PolicyID      string   // may be empty
	DatastoreIDs  []string // candidates, most preferred first; at least one
	// What the provisioner passed (--extra-create-metadata); may be empty.
	PVCName, PVCNamespace, PVName string
	// File, when set, makes a file volume (a vSAN file share that nodes
	// mount over NFS) instead of a block volume (file_volumes.go).
	File *FileSpec
	// SourceVolumeID and SourceSnapshotID, when set, make the volume a
	// full copy of that snapshot (CnsSnapshotVolumeSource); a
	// SourceVolumeID alone makes it a clone of that volume (snapshots.go).
	SourceVolumeID, SourceSnapshotID string
}

// FileSpec is what a file volume needs beyond a block volume's spec.
type FileSpec struct {
	// NetPermissions say which NFS clients may mount the share, and how;
	// for a client address, the first that matches applies.
	NetPermissions []NetPermission
}

// NetPermission is the NFS access of a set of client addresses.
type NetPermission struct {
	IPs        string // "*", an address, a CIDR range, or a comma-separated list of those
	Access     string // READ_WRITE, READ_ONLY or NO_ACCESS
	RootSquash bool   // root on the client is mapped to nobody
}

// Volume is a CNS volume.
type Volume struct {
	ID            string
	Name          string
	CapacityBytes int64
	DatastoreURL  string
	PolicyID      string
	ClusterID     string
	PVCName       string
	PVCNamespace  string
	PVName        string
	// Entities are this cluster's entity metadata of the volume (its PV,
	// claim and pods, metadata.go); Clusters the container clusters CNS
	// records for it.
	Entities []Entity
	Clusters []string
	// Health is CNS's health status ("green", "red", …), when known.
	Health string
	// Attachments are the node VMs the volume's disk is attached to.
	Attachments []Attachment
	CreateTime  time.Time
	// DiskPath is a block volume's VMDK, "[datastore] folder/x.vmdk", when
	// CNS reports it (intree.go).
	DiskPath string
	// File: a file volume (a vSAN file share); AccessPoints are its NFS
	// exports by protocol (AccessPointNFSv41: "server:/vsanfs/share").
	File         bool
	AccessPoints map[string]string
	// Existing is set by CreateVolume when it found the volume by name
	// (made by an earlier attempt) rather than made it.
	Existing bool
}

// Attachment is one volume's disk on one node VM.
type Attachment struct {
	NodeUUID string // BIOS UUID of the VM, lowercase dashed: the CSI node ID
	VMName   string
	DiskUUID string // the disk's UUID, 32 lowercase hex digits
}

// NodeVM is a Kubernetes node's virtual machine.
type NodeVM struct {
	UUID string // BIOS UUID, lowercase dashed
	Name string
	ID   string // managed object ID
	Host string // name of the host it runs on
	// Topology is its host's segment (tag category → tag); nil when no
	// topology categories are configured.
	Topology map[string]string
}

// Sentinel errors. Wrap them with context (fmt.Errorf("…: %w", ErrX)); the
// driver maps them to gRPC codes with errors.Is.
var (
	ErrVolumeNotFound    = errors.New("volume not found")
	ErrNodeNotFound      = errors.New("node VM not found")
	ErrPolicyNotFound    = errors.New("storage policy not found")
	ErrVolumeInUse       = errors.New("volume is attached")
	ErrInsufficientSpace = errors.New("not enough free space")
	// ErrNodeFull: the node VM has no free SCSI unit for another disk (4
	// controllers of 15 disks each are vSphere's maximum).
	ErrNodeFull         = errors.New("node VM has no free SCSI slot")
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrNotAuthenticated = errors.New("not authenticated to vCenter")
	ErrUnavailable      = errors.New("vCenter unavailable")
	// ErrPermissionDenied: the vCenter user lacks a privilege on an object
	// (NoPermission); the message names the privilege and the object.
	ErrPermissionDenied = errors.New("the vCenter user lacks a privilege")
	// ErrPolicyIncompatible: the storage policy is not compatible with the
	// datastore a volume is on.
	ErrPolicyIncompatible = errors.New("storage policy not compatible with the volume's datastore")
	// ErrNotSupported: this vCenter's release has no method the call needs
	// (MethodNotFound); the message names the method and the release that
	// has it (release.go).
	ErrNotSupported = errors.New("not supported by this vCenter's release")
)
