package driver

import (
	"context"
	"fmt"
	"sync"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// snapshotNames knows, for the cluster's snapshots, which volume each name
// (the CNS snapshot's description) is of: a CSI snapshot name is unique
// across the cluster, so CreateSnapshot of a name that another volume's
// snapshot has must answer AlreadyExists. Asking vCenter each time would
// read every snapshot of every volume of the cluster per CreateSnapshot;
// instead the names are read once, at the first CreateSnapshot (this
// cluster's volumes and their snapshots, never other clusters'), and then
// kept by this controller's own creates and deletes.
//
// What it can miss: snapshots another controller of the cluster made
// after this one read them (the other replica while it held the
// snapshotter's lease, then handed it back). Those names are the
// snapshotter's, one per VolumeSnapshot ("snapshot-<UID>"), so only a
// client that reuses a name for another volume would notice: its request
// succeeds instead of AlreadyExists.
type snapshotNames struct {
	mu     sync.Mutex
	loaded bool
	byName map[string]string // name → volume ID
	byID   map[string]string // snapshot ID (snapshotID) → name
}

func newSnapshotNames() *snapshotNames {
	return &snapshotNames{byName: map[string]string{}, byID: map[string]string{}}
}

// volumeOf returns the volume whose snapshot has that name ("" for none),
// reading the cluster's snapshots the first time.
func (n *snapshotNames) volumeOf(ctx context.Context, vc vcenter.Client, name string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.loaded {
		all, _, err := vc.Snapshots(ctx, vcenter.SnapshotFilter{}, 0, 0)
		if err != nil {
			return "", fmt.Errorf("read the cluster's snapshot names: %w", err)
		}
		for _, s := range all {
			n.addLocked(s.Description, s.VolumeID, s.ID)
		}
		n.loaded = true
	}
	return n.byName[name], nil
}

// add notes a snapshot of the cluster.
func (n *snapshotNames) add(name, volumeID, cnsID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addLocked(name, volumeID, cnsID)
}

func (n *snapshotNames) addLocked(name, volumeID, cnsID string) {
	if name == "" {
		return
	}
	n.byName[name] = volumeID
	n.byID[snapshotID(volumeID, cnsID)] = name
}

// remove forgets a snapshot that was deleted.
func (n *snapshotNames) remove(volumeID, cnsID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := snapshotID(volumeID, cnsID)
	if name, ok := n.byID[id]; ok {
		if n.byName[name] == volumeID {
			delete(n.byName, name)
		}
		delete(n.byID, id)
	}
}
