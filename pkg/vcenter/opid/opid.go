// Package opid makes and reads the operation IDs the driver sends with
// every vCenter call that starts a task. vCenter logs a call's operation
// ID (the SOAP header operationID; "opId" in vpxd and CNS logs) and
// records it on the task the call starts as TaskInfo.activationId, so a
// task tells, to any process that reads it, which cluster's driver started
// it, for what kind of operation and on which object. A controller that
// was restarted, or the other replica, recognises its cluster's tasks by
// it; tasks of other clusters, other users, DRS or schedules are not its
// own (vcenter/tasks.go).
//
// Form: "vcsi-" + 8 hex digits of SHA-256(cluster ID) + "-" + operation +
// "-" + 8 hex digits of SHA-256(object key) + "-" + 6 random hex digits
// (each call's own, for reading logs). The digests keep it short and free
// of characters a log parser would choke on; a collision of two clusters'
// or two keys' digits (one in 4 billion) only makes an operation wait for
// a task it need not have waited for.
package opid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prefix starts every operation ID the driver makes.
const Prefix = "vcsi-"

// Operations, as they appear in operation IDs.
const (
	Create       = "create" // CnsCreateVolume (a new volume, a restore, a clone's volume, a registered disk); key: the volume name
	Snapshot     = "snap"   // CnsCreateSnapshots; key: volume ID + "/" + description
	Attach       = "attach" // CnsAttachVolume; key: the node VM's managed object ID
	Detach       = "detach" // CnsDetachVolume; key: the node VM's managed object ID
	Delete       = "delete" // CnsDeleteVolume; key: the volume ID
	Other        = "other"  // anything else that starts a task; key: the volume ID or ""
	Unsnap       = "unsnap" // CnsDeleteSnapshots; key: the volume ID
	Extend       = "extend" // CnsExtendVolume; key: the volume ID
	QuerySnaps   = "qsnap"  // CnsQuerySnapshots
	UpdateMeta   = "meta"   // CnsUpdateVolumeMetadata; key: the volume ID
	ChangePolicy = "policy" // CnsReconfigVolumePolicy; key: the volume ID
)

// Token is what an operation ID says.
type Token struct {
	Cluster string // Tag(cluster ID)
	Op      string
	Key     string // Tag(object key)
}

// Tag is the 8 hex digits of SHA-256(s) an operation ID carries for a
// cluster ID or an object key.
func Tag(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// New makes the operation ID of one call.
func New(clusterID, op, key string) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return Prefix + Tag(clusterID) + "-" + op + "-" + Tag(key) + "-" + hex.EncodeToString(r[:])
}

// Parse reads an operation ID (or a task's activationId, which may carry
// it with something before or after); false when it holds none.
func Parse(s string) (Token, bool) {
	i := strings.Index(s, Prefix)
	if i < 0 {
		return Token{}, false
	}
	f := strings.SplitN(s[i+len(Prefix):], "-", 4)
	if len(f) < 3 || !isTag(f[0]) || f[1] == "" || !isTag(f[2]) {
		return Token{}, false
	}
	return Token{Cluster: f[0], Op: f[1], Key: f[2]}, true
}

func isTag(s string) bool {
	if len(s) != 8 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
