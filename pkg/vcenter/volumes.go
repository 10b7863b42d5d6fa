package vcenter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/opid"
)

const mib = 1 << 20

// listAllPage is the page size ListVolumes uses when asked for no limit.
const listAllPage = 500

// createAttempts bounds how often CreateVolume settles and tries again
// after an uncertain or refused-for-now attempt.
const createAttempts = 5

// CreateVolume makes the volume named spec.Name exactly once, on the first
// candidate datastore that takes it. Candidates the cache already knows to
// be too small are skipped without a call.
//
// Exactly once: before it creates, it settles the driver user's tasks in
// doubt (taskWaiter: of an earlier controller, or whose start was not
// answered) and then looks the name up again when it had to wait; after
// an attempt whose outcome is unknown (the answer lost, the task lost in a
// vCenter restart) or that CNS refused for now (busy), it settles, reading
// vCenter's running tasks directly, and looks again before trying once
// more. A volume found by name is returned as it is.
func (c *client) CreateVolume(ctx context.Context, spec CreateSpec) (Volume, error) {
	switch {
	case spec.Name == "":
		return Volume{}, fmt.Errorf("%w: volume name is empty", ErrInvalidArgument)
	case spec.CapacityBytes <= 0:
		return Volume{}, fmt.Errorf("%w: capacity %d bytes", ErrInvalidArgument, spec.CapacityBytes)
	case len(spec.DatastoreIDs) == 0:
		return Volume{}, fmt.Errorf("%w: no candidate datastore", ErrInvalidArgument)
	}
	if spec.SourceVolumeID != "" && spec.SourceSnapshotID == "" {
		return c.cloneVolume(ctx, spec)
	}
	direct := false
	for attempt := 1; ; attempt++ {
		waited, err := c.settle(ctx, direct, opOn(opid.Create, spec.Name))
		if err != nil {
			return Volume{}, err
		}
		if waited > 0 || attempt > 1 {
			vol, err := c.FindVolumeByName(ctx, spec.Name)
			if err == nil {
				klog.InfoS("Volume found by name after settling", "name", spec.Name, "volumeID", vol.ID, "attempt", attempt)
				vol.Existing = true
				return vol, nil
			}
			if !errors.Is(err, ErrVolumeNotFound) {
				return Volume{}, err
			}
		}
		vol, err := c.createOnce(ctx, spec)
		if err == nil || attempt >= createAttempts || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
			return vol, err
		}
		direct = errors.Is(err, errUncertain) || errors.Is(err, errTaskLost)
		klog.InfoS("Creating the volume: outcome unknown or vCenter busy; settling and looking again", "name", spec.Name, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return Volume{}, err
		case <-time.After(backoff(attempt)):
		}
	}
}

// createOnce tries the candidates in order; an attempt whose outcome is
// unknown ends it (the caller settles before any other datastore is tried).
func (c *client) createOnce(ctx context.Context, spec CreateSpec) (Volume, error) {
	sizeMB := (spec.CapacityBytes + mib - 1) / mib
	inv := c.inv.Load()
	var short, unknown []string
	for _, id := range spec.DatastoreIDs {
		ds, ok := inv.datastore(id)
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		if ds.free < sizeMB*mib {
			short = append(short, fmt.Sprintf("%s (%d MiB free)", ds.name, ds.free/mib))
			continue
		}
		vol, err := c.createOn(ctx, spec, sizeMB, ds)
		if errors.Is(err, ErrInsufficientSpace) {
			klog.V(2).InfoS("Datastore refused the volume, trying the next", "name", spec.Name, "datastore", ds.name, "err", err)
			short = append(short, fmt.Sprintf("%s (%v)", ds.name, err))
			continue
		}
		return vol, err
	}
	if len(short) > 0 {
		return Volume{}, fmt.Errorf("%w: no candidate datastore has %d MiB free: %s", ErrInsufficientSpace, sizeMB, strings.Join(short, ", "))
	}
	return Volume{}, fmt.Errorf("%w: unknown datastores %v", ErrInvalidArgument, unknown)
}

func (c *client) createOn(ctx context.Context, spec CreateSpec, sizeMB int64, ds dsState) (Volume, error) {
	cs := cnstypes.CnsVolumeCreateSpec{
		Name:       spec.Name,
		VolumeType: string(cnstypes.CnsVolumeTypeBlock),
		Datastores: []types.ManagedObjectReference{ds.ref},
		BackingObjectDetails: &cnstypes.CnsBlockBackingDetails{
			CnsBackingObjectDetails: cnstypes.CnsBackingObjectDetails{CapacityInMb: sizeMB},
		},
		Metadata: c.volumeMetadata(spec),
	}
	if spec.File != nil {
		cs.VolumeType = string(cnstypes.CnsVolumeTypeFile)
		cs.BackingObjectDetails, cs.CreateSpec = fileCreateSpec(spec, sizeMB)
	}
	if spec.SourceSnapshotID != "" {
		cs.VolumeSource = &cnstypes.CnsSnapshotVolumeSource{
			VolumeId:   cnstypes.CnsVolumeId{Id: spec.SourceVolumeID},
			SnapshotId: cnstypes.CnsSnapshotId{Id: spec.SourceSnapshotID},
		}
	}
	if spec.PolicyID != "" {
		cs.Profile = []types.BaseVirtualMachineProfileSpec{&types.VirtualMachineDefinedProfileSpec{ProfileId: spec.PolicyID}}
	}
	r, err := c.runCNS(ctx, opid.Create, spec.Name, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{cs})
	})
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %q on %s: %w", spec.Name, ds.name, err)
	}
	id := r.GetCnsVolumeOperationResult().VolumeId.Id
	if id == "" {
		return Volume{}, fmt.Errorf("create volume %q on %s: vCenter returned no volume ID", spec.Name, ds.name)
	}
	c.noteName(spec.Name, id)
	c.loadNamesSoon() // vCenter is now known to record operation IDs (this create's)
	klog.V(4).InfoS("Volume created", "volumeID", id, "name", spec.Name, "datastore", ds.name, "sizeMB", sizeMB, "file", spec.File != nil)
	if spec.File != nil {
		// The access points are the share's: read them as CNS has them.
		return c.Volume(ctx, id)
	}
	return Volume{
		ID:            id,
		Name:          spec.Name,
		CapacityBytes: sizeMB * mib,
		DatastoreURL:  ds.url,
		PolicyID:      spec.PolicyID,
		ClusterID:     c.opts.ClusterID,
		PVCName:       spec.PVCName,
		PVCNamespace:  spec.PVCNamespace,
		PVName:        spec.PVName,
	}, nil
}

// volumeMetadata is the container-cluster record and, when the provisioner
// passed them, the PV and PVC entities (what vSphere Client's Container
// Volumes view shows).
func (c *client) volumeMetadata(spec CreateSpec) cnstypes.CnsVolumeMetadata {
	cc := c.containerCluster()
	md := cnstypes.CnsVolumeMetadata{ContainerCluster: cc, ContainerClusterArray: []cnstypes.CnsContainerCluster{cc}}
	if spec.PVName != "" {
		md.EntityMetadata = append(md.EntityMetadata, c.cnsEntity(Entity{Kind: EntityPV, Name: spec.PVName}, false))
	}
	if spec.PVCName != "" {
		pvc := Entity{Kind: EntityPVC, Name: spec.PVCName, Namespace: spec.PVCNamespace}
		if spec.PVName != "" {
			pvc.Refers = &EntityRef{Kind: EntityPV, Name: spec.PVName}
		}
		md.EntityMetadata = append(md.EntityMetadata, c.cnsEntity(pvc, false))
	}
	return md
}

// DeleteVolume deletes the volume and its disk. "Not found" is believed
// only when a query by ID confirms the volume is gone.
func (c *client) DeleteVolume(ctx context.Context, volumeID string) error {
	err := c.deleteVolume(ctx, volumeID)
	if errors.Is(err, ErrHasSnapshots) && c.DropCloneLeftovers(ctx, volumeID, "") == 0 {
		// The only snapshots were clones' transient ones, left by a clone
		// whose last step failed: the driver's own, gone now.
		err = c.deleteVolume(ctx, volumeID)
	}
	return err
}

func (c *client) deleteVolume(ctx context.Context, volumeID string) error {
	if atts := c.inv.Load().attachments(volumeID); len(atts) > 0 {
		return fmt.Errorf("%w: volume %s is attached to %s", ErrVolumeInUse, volumeID, vmNames(atts))
	}
	_, err := c.runCNSAgain(ctx, opid.Delete, volumeID, ErrVolumeNotFound, func(ctx context.Context) (*object.Task, error) {
		return c.conn.cns.DeleteVolume(ctx, []cnstypes.CnsVolumeId{{Id: volumeID}}, true)
	})
	if errors.Is(err, ErrVolumeNotFound) {
		if _, qerr := c.Volume(ctx, volumeID); qerr == nil {
			err = fmt.Errorf("CNS said volume %s was not found, but it is there: %w", volumeID, err)
			err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		} else if !errors.Is(qerr, ErrVolumeNotFound) {
			err = qerr
		}
	}
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", volumeID, err)
	}
	c.forgetVolume(volumeID)
	klog.V(4).InfoS("Volume deleted", "volumeID", volumeID)
	return nil
}

// Volume returns one volume by ID.
func (c *client) Volume(ctx context.Context, volumeID string) (Volume, error) {
	vols, err := c.query(ctx, cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: volumeID}}})
	if err != nil {
		return Volume{}, fmt.Errorf("query volume %s: %w", volumeID, err)
	}
	if len(vols.Volumes) == 0 {
		return Volume{}, fmt.Errorf("%w: %s", ErrVolumeNotFound, volumeID)
	}
	return c.toVolumes(vols.Volumes)[0], nil
}

// FindVolumeByName returns this cluster's volume of that name.
func (c *client) FindVolumeByName(ctx context.Context, name string) (Volume, error) {
	if c.knownAbsent(name) { // names.go
		klog.V(5).InfoS("Volume name known to be free", "name", name)
		return Volume{}, fmt.Errorf("%w: no volume named %q in cluster %s", ErrVolumeNotFound, name, c.opts.ClusterID)
	}
	found, err := c.lookupName(ctx, name)
	if err != nil {
		return Volume{}, fmt.Errorf("query volume %q: %w", name, err)
	}
	c.loadNamesSoon()
	for _, v := range found {
		c.noteName(v.Name, v.VolumeId.Id)
	}
	if len(found) == 0 {
		return Volume{}, fmt.Errorf("%w: no volume named %q in cluster %s", ErrVolumeNotFound, name, c.opts.ClusterID)
	}
	out := c.toVolumes(found)
	if len(out) > 1 {
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		klog.InfoS("Several volumes have the same name, using the first", "name", name, "volumeID", out[0].ID, "count", len(out))
	}
	return out[0], nil
}

// ListVolumes pages through this cluster's volumes with the CNS cursor.
func (c *client) ListVolumes(ctx context.Context, offset, limit int64) ([]Volume, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("%w: offset %d", ErrInvalidArgument, offset)
	}
	if limit <= 0 {
		var all []Volume
		for {
			page, next, err := c.ListVolumes(ctx, offset, listAllPage)
			if err != nil {
				return nil, 0, err
			}
			all = append(all, page...)
			if next == 0 {
				return all, 0, nil
			}
			offset = next
		}
	}
	res, err := c.query(ctx, cnstypes.CnsQueryFilter{
		ContainerClusterIds: []string{c.opts.ClusterID},
		Cursor:              &cnstypes.CnsCursor{Offset: offset, Limit: limit},
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list volumes: %w", err)
	}
	vols, next := cnsPage(res, offset, limit)
	return c.toVolumes(vols), next, nil
}

// cnsPage reads a query result as a page. A server that ignored the cursor
// (all matches, zero cursor) is paged here, in volume ID order.
func cnsPage(res *cnstypes.CnsQueryResult, offset, limit int64) ([]cnstypes.CnsVolume, int64) {
	vols, cur := res.Volumes, res.Cursor
	n := int64(len(vols))
	ignored := cur.Offset == 0 && cur.TotalRecords == 0 && (offset > 0 || n > limit)
	if ignored {
		sort.Slice(vols, func(i, j int) bool { return vols[i].VolumeId.Id < vols[j].VolumeId.Id })
		if offset >= n {
			return nil, 0
		}
		end := min(offset+limit, n)
		next := end
		if end >= n {
			next = 0
		}
		return vols[offset:end], next
	}
	switch {
	case n == 0:
		return nil, 0
	case cur.TotalRecords > 0:
		if cur.Offset > offset && cur.Offset < cur.TotalRecords {
			return vols, cur.Offset
		}
		return vols, 0
	case n >= limit:
		return vols, offset + n // total unknown: the next page may be empty
	}
	return vols, 0
}

func (c *client) query(ctx context.Context, f cnstypes.CnsQueryFilter) (*cnstypes.CnsQueryResult, error) {
	began := time.Now()
	res, err := c.conn.cns.QueryVolume(ctx, &f)
	if o, ok := c.tasks.obs.(CNSObserver); ok {
		o.CNSOperation("CnsQueryVolume", err != nil, time.Since(began))
	}
	if err != nil {
		return nil, mapFault(err, ErrVolumeNotFound)
	}
	return res, nil
}

// toVolumes converts CNS volumes, with attachments from the VM cache.
func (c *client) toVolumes(cvs []cnstypes.CnsVolume) []Volume {
	ids := make(map[string]bool, len(cvs))
	for _, cv := range cvs {
		ids[cv.VolumeId.Id] = true
	}
	atts := c.inv.Load().attachmentsOf(ids)
	out := make([]Volume, 0, len(cvs))
	for _, cv := range cvs {
		v := Volume{
			ID:           cv.VolumeId.Id,
			Name:         cv.Name,
			DatastoreURL: cv.DatastoreUrl,
			PolicyID:     cv.StoragePolicyId,
			Health:       cv.HealthStatus,
			ClusterID:    cv.Metadata.ContainerCluster.ClusterId,
			Attachments:  atts[cv.VolumeId.Id],
		}
		if v.ClusterID == "" {
			for _, cc := range cv.Metadata.ContainerClusterArray {
				if cc.ClusterId == c.opts.ClusterID {
					v.ClusterID = cc.ClusterId
				}
			}
		}
		if b := cv.BackingObjectDetails; b != nil && b.GetCnsBackingObjectDetails() != nil {
			v.CapacityBytes = b.GetCnsBackingObjectDetails().CapacityInMb * mib
		}
		if cv.VolumeType == string(cnstypes.CnsVolumeTypeFile) {
			v.File, v.AccessPoints = true, accessPoints(cv.BackingObjectDetails)
		}
		if b, ok := cv.BackingObjectDetails.(*cnstypes.CnsBlockBackingDetails); ok {
			v.DiskPath = b.BackingDiskPath
		}
		for _, cc := range cv.Metadata.ContainerClusterArray {
			v.Clusters = append(v.Clusters, cc.ClusterId)
		}
		v.Entities = c.entitiesOf(cv.Metadata)
		for _, e := range v.Entities {
			switch e.Kind {
			case EntityPVC:
				v.PVCName, v.PVCNamespace = e.Name, e.Namespace
			case EntityPV:
				v.PVName = e.Name
			}
		}
		out = append(out, v)
	}
	return out
}

// AttachVolume attaches the volume to the node VM; the cache answers when
// it is already attached. vCenter saying the disk is in use is checked on
// the VM: already attached there (an earlier attach whose answer was lost)
// is success.
func (c *client) AttachVolume(ctx context.Context, volumeID, nodeUUID string) (string, error) {
	node, vmRef, ok, err := c.lookupNode(ctx, nodeUUID)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%w: no VM with BIOS UUID %q", ErrNodeNotFound, nodeUUID)
	}
	inv := c.inv.Load()
	for _, a := range inv.attachments(volumeID) {
		if a.NodeUUID == node.UUID && a.DiskUUID != "" {
			return a.DiskUUID, nil
		}
		if a.NodeUUID != node.UUID {
			return "", fmt.Errorf("%w: volume %s is attached to VM %s", ErrVolumeInUse, volumeID, a.VMName)
		}
	}
	var diskUUID string
	err = again(ctx, "attach", func() error {
		r, err := c.batched(ctx, &c.attaches, vmRef, volumeID)
		if ar, ok := r.(*cnstypes.CnsVolumeAttachResult); ok && err == nil {
			diskUUID = ar.DiskUUID
		}
		return err
	})
	if errors.Is(err, ErrVolumeInUse) {
		if uuid, on, derr := c.diskOnVM(ctx, vmRef, volumeID); derr == nil && on {
			klog.InfoS("Volume already attached to the VM", "volumeID", volumeID, "vm", node.Name)
			diskUUID, err = uuid, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("attach volume %s to VM %s: %w", volumeID, node.Name, err)
	}
	diskUUID = normalizeDiskUUID(diskUUID)
	if diskUUID == "" {
		for _, a := range c.inv.Load().attachments(volumeID) {
			if a.NodeUUID == node.UUID {
				diskUUID = a.DiskUUID
			}
		}
	}
	if diskUUID == "" {
		return "", fmt.Errorf("attach volume %s to VM %s: vCenter returned no disk UUID", volumeID, node.Name)
	}
	c.inv.Load().recordAttach(vmRef, volumeID, diskUUID)
	klog.V(4).InfoS("Volume attached", "volumeID", volumeID, "nodeID", node.UUID, "vm", node.Name, "diskUUID", diskUUID)
	return diskUUID, nil
}

// DetachVolume detaches the volume from the node VM; a VM that is gone or a
// volume whose disk is not on the VM is success. It never answers while an
// attach of the volume may still complete: it waits for this process's
// attaches of it and for tasks in doubt first, and when the cache says the
// disk is not there it asks the VM itself.
func (c *client) DetachVolume(ctx context.Context, volumeID, nodeUUID string) error {
	node, vmRef, ok, err := c.lookupNode(ctx, nodeUUID)
	if err != nil {
		return fmt.Errorf("detach volume %s: %w", volumeID, err)
	}
	if !ok {
		klog.V(2).InfoS("Node VM gone, volume counts as detached", "volumeID", volumeID, "nodeID", nodeUUID)
		return nil
	}
	if err := c.attaches.settle(ctx, volumeID); err != nil {
		return err
	}
	if _, err := c.settle(ctx, false, opOn(opid.Attach, vmRef.Value)); err != nil {
		return err
	}
	attached := false
	for _, a := range c.inv.Load().attachments(volumeID) {
		attached = attached || a.NodeUUID == node.UUID
	}
	if !attached {
		_, on, err := c.diskOnVM(ctx, vmRef, volumeID)
		switch {
		case errors.Is(err, ErrNodeNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("detach volume %s from VM %s: %w", volumeID, node.Name, err)
		case !on:
			klog.V(2).InfoS("Volume not attached to the VM", "volumeID", volumeID, "nodeID", node.UUID, "vm", node.Name)
			return nil
		}
	}
	err = again(ctx, "detach", func() error {
		_, err := c.batched(ctx, &c.detaches, vmRef, volumeID)
		return err
	})
	if err != nil && !errors.Is(err, errUncertain) {
		// Detached all the same? Only the VM knows.
		_, on, derr := c.diskOnVM(ctx, vmRef, volumeID)
		switch {
		case errors.Is(derr, ErrNodeNotFound), derr == nil && !on:
			klog.V(2).InfoS("Detach failed, but the disk is not on the VM: detached", "volumeID", volumeID, "vm", node.Name, "err", err)
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("detach volume %s from VM %s: %w", volumeID, node.Name, err)
	}
	c.inv.Load().recordDetach(vmRef, volumeID)
	klog.V(4).InfoS("Volume detached", "volumeID", volumeID, "nodeID", node.UUID, "vm", node.Name)
	return nil
}

// diskOnVM reads the VM's devices from vCenter (not the cache) and says
// whether the volume's disk is among them, with its UUID.
func (c *client) diskOnVM(ctx context.Context, vm types.ManagedObjectReference, volumeID string) (string, bool, error) {
	var mvm mo.VirtualMachine
	err := property.DefaultCollector(c.conn.vim).RetrieveOne(ctx, vm, []string{"config.hardware.device"}, &mvm)
	if err != nil {
		return "", false, mapFault(err, ErrNodeNotFound)
	}
	if mvm.Config == nil {
		return "", false, nil
	}
	for _, d := range mvm.Config.Hardware.Device {
		if disk, ok := fcdDisk(d); ok && disk.volumeID == volumeID {
			return disk.diskUUID, true, nil
		}
	}
	return "", false, nil
}

// idempotentAttempts bounds how often an operation that may be done again
// (delete, detach, attach, extend, …) is tried when it fails for a passing
// reason.
const idempotentAttempts = 4

// again runs an operation that may be done again while it fails for a
// passing reason (ErrUnavailable: CNS busy, an answer or a task lost), with
// exponential backoff and jitter; the sidecars retry what is left.
func again(ctx context.Context, what string, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt >= idempotentAttempts || ctx.Err() != nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		klog.V(2).InfoS("vCenter operation failed for a passing reason; trying again", "operation", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff(attempt)):
		}
	}
}

// runCNSAgain is runCNS for an operation that may be done again (again).
func (c *client) runCNSAgain(ctx context.Context, kind, key string, notFound error, start startFunc) (r cnstypes.BaseCnsVolumeOperationResult, err error) {
	err = again(ctx, kind, func() error {
		r, err = c.runCNS(ctx, kind, key, notFound, start)
		return err
	})
	return r, err
}

// runCNS starts a CNS task of operation kind on the object key names
// (startTask), waits for it through the shared waiter and returns its one
// per-volume result; every fault is mapped.
func (c *client) runCNS(ctx context.Context, kind, key string, notFound error, start startFunc) (cnstypes.BaseCnsVolumeOperationResult, error) {
	results, err := c.runCNSBatch(ctx, kind, key, notFound, start)
	if err != nil {
		return nil, err
	}
	r := results[0]
	if f := r.GetCnsVolumeOperationResult().Fault; f != nil {
		return r, mapFault(localizedError(f), notFound)
	}
	return r, nil
}

// runCNSBatch is runCNS for a task with several specs: every result, in
// the order of the specs; each result's own fault is the caller's to read.
// An error here is the task's (or its start's): it concerns every spec.
func (c *client) runCNSBatch(ctx context.Context, kind, key string, notFound error, start startFunc) ([]cnstypes.BaseCnsVolumeOperationResult, error) {
	began := time.Now()
	results, err := c.runCNSTask(ctx, kind, key, notFound, start)
	if o, ok := c.tasks.obs.(CNSObserver); ok {
		took := time.Since(began)
		if err != nil {
			o.CNSOperation(cnsMethod(kind), true, took)
		}
		for _, r := range results {
			o.CNSOperation(cnsMethod(kind), r.GetCnsVolumeOperationResult().Fault != nil, took)
		}
	}
	return results, err
}

// cnsMethod names the CNS method an operation kind (opid) calls.
func cnsMethod(kind string) string {
	switch kind {
	case opid.Create:
		return "CnsCreateVolume"
	case opid.Delete:
		return "CnsDeleteVolume"
	case opid.Attach:
		return "CnsAttachVolume"
	case opid.Detach:
		return "CnsDetachVolume"
	case opid.Extend:
		return "CnsExtendVolume"
	case opid.UpdateMeta:
		return "CnsUpdateVolumeMetadata"
	case opid.Snapshot:
		return "CnsCreateSnapshots"
	case opid.Unsnap:
		return "CnsDeleteSnapshots"
	case opid.QuerySnaps:
		return "CnsQuerySnapshots"
	case opid.ChangePolicy:
		return "CnsReconfigVolumePolicy"
	}
	return kind
}

// runCNSTask is runCNSBatch without telling the CNSObserver.
func (c *client) runCNSTask(ctx context.Context, kind, key string, notFound error, start startFunc) ([]cnstypes.BaseCnsVolumeOperationResult, error) {
	out, ref, err := c.runTask(ctx, kind, key, notFound, start)
	if err != nil {
		return nil, mapFault(err, notFound)
	}
	results := batchResults(out.result)
	if len(results) == 0 {
		// The state arrived without the result: read the task once.
		if got, ferr := c.fetchTask(ctx, ref); ferr == nil {
			results = batchResults(got.result)
		}
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("CNS %s task %s returned no result", kind, ref.Value)
	}
	return results, nil
}

func batchResults(result any) []cnstypes.BaseCnsVolumeOperationResult {
	switch r := result.(type) {
	case cnstypes.CnsVolumeOperationBatchResult:
		return r.VolumeResults
	case *cnstypes.CnsVolumeOperationBatchResult:
		return r.VolumeResults
	}
	return nil
}

func vmNames(atts []Attachment) string {
	names := make([]string, 0, len(atts))
	for _, a := range atts {
		names = append(names, a.VMName)
	}
	return strings.Join(names, ", ")
}
