// Package syncer keeps what CNS holds about this cluster's volumes (the
// entity metadata the vSphere Client's Container Volumes view shows: PV,
// claim, pods) current with Kubernetes, and finds, in a periodic full
// sync, drift, orphans (CNS volumes of this cluster no PV names) and PVs
// whose CNS volume is gone. It reads the Kubernetes API through informers
// and writes to vCenter only metadata: it never creates or deletes a
// volume.
//
// Changes are gathered per volume in a set of dirty volumes; one worker
// takes the set after a short pause (so that the changes of a burst go
// together), computes for each volume what CNS should hold (Desired) and
// what it holds (as last read or written), and sends the differences, up
// to 100 volumes per CnsUpdateVolumeMetadata call, one call at a time. A
// failed call puts its volumes back, and the worker retries with
// exponential backoff; CSI calls never wait for it.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// CNS is what the syncer needs of vCenter.
type CNS interface {
	ListVolumes(ctx context.Context, offset, limit int64) ([]vcenter.Volume, int64, error)
	VolumesByID(ctx context.Context, ids []string) ([]vcenter.Volume, error)
	UpdateMetadata(ctx context.Context, updates []vcenter.MetadataUpdate) (map[string]error, error)
	RegisterDisk(ctx context.Context, diskID, name string) (vcenter.Volume, error)
}

// Observer receives what the syncer did (the metrics).
type Observer interface {
	// MetadataSent: one CnsUpdateVolumeMetadata call for volumes, failed
	// as a whole or not; lags are, per volume written, how long since
	// the first change the call carried.
	MetadataSent(volumes int, failed bool, lags []time.Duration)
	// FullSync: a full sync ended, failed when err is not nil; updated
	// volumes had drifted.
	FullSync(took time.Duration, updated int, err error)
	// Findings: how many orphans and PVs missing their volume are known.
	Findings(orphans, missing int)
	// VolumeHealth: at a full sync, how many bound PVs of the driver have
	// a volume CNS reports accessible, and how many one it reports
	// inaccessible or that does not exist (reportHealth).
	VolumeHealth(accessible, inaccessible int)
}

// Options tune the syncer; zero values take the defaults.
type Options struct {
	Driver string // the CSI driver name of our PVs
	// FullSyncInterval: how often the full sync runs (and once at start).
	FullSyncInterval time.Duration
	// Gather: the pause after a change before the worker takes the dirty
	// set, so that a burst of changes goes out together.
	Gather time.Duration
	// OrphanGrace: how long a CNS volume of the cluster must have had no
	// PV before it is reported (a volume just created has its PV a moment
	// later).
	OrphanGrace time.Duration
	// MaxBackoff bounds the wait between retries after failures.
	MaxBackoff time.Duration
	Observer   Observer
	Recorder   record.EventRecorder // events on PVs; nil: none
}

// Defaults.
const (
	DefaultFullSyncInterval = 30 * time.Minute // as upstream's syncer
	defaultGather           = 200 * time.Millisecond
	defaultOrphanGrace      = time.Minute
	defaultMaxBackoff       = 30 * time.Second
	firstBackoff            = time.Second
	// resync 0: the informers' caches are the API server's; the full sync
	// is what puts CNS right.
	informerResync = 0
)

// Syncer is the metadata syncer of one cluster.
type Syncer struct {
	opts Options
	cns  CNS

	factory informers.SharedInformerFactory
	pvs     corelisters.PersistentVolumeLister
	pvcs    corelisters.PersistentVolumeClaimLister
	pvIdx   cache.Indexer // PVs by volume handle
	podIdx  cache.Indexer // pods by claim (namespace/name)
	synced  []cache.InformerSynced

	mu      sync.Mutex
	dirty   map[string]time.Time        // volume ID → first change not yet sent
	known   map[string][]vcenter.Entity // what CNS holds for this cluster, as last read or written
	noPV    map[string]time.Time        // CNS volumes of the cluster without a PV, since
	orphans map[string]Orphan           // reported: without a PV for OrphanGrace
	missing map[string]Missing          // by PV name: PVs whose volume is gone
	last    Report                      // the last full sync's counts
	wake    chan struct{}
	full    chan struct{}
	check   chan struct{} // orphan candidates are due for a second look
}

// Report is what the syncer knows of the cluster's volumes: the last full
// sync's counts, and the orphans and missing volumes known now.
type Report struct {
	Volumes int       // CNS volumes of this cluster, at the last full sync
	PVs     int       // PVs of this driver, then
	Updated int       // volumes whose metadata that sync put right
	At      time.Time // when it ended
	Orphans []Orphan  // CNS volumes of this cluster that no PV names
	Missing []Missing // PVs whose CNS volume is gone
}

// Orphan is a CNS volume of this cluster that no PV of the cluster names.
type Orphan struct {
	VolumeID, Name string
	Datastore      string
	Since          time.Time // when the syncer first saw it without a PV
}

// Missing is a PV of this driver whose CNS volume does not exist.
type Missing struct {
	PV, VolumeID string
	Claim        string // namespace/name, when bound
}

const (
	byHandle = "volumeHandle"
	byClaim  = "claim"
)

// New makes the syncer; Run starts it.
func New(client kubernetes.Interface, cns CNS, opts Options) (*Syncer, error) {
	if opts.FullSyncInterval <= 0 {
		opts.FullSyncInterval = DefaultFullSyncInterval
	}
	if opts.Gather <= 0 {
		opts.Gather = defaultGather
	}
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = defaultOrphanGrace
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = defaultMaxBackoff
	}
	s := &Syncer{
		opts: opts, cns: cns,
		factory: informers.NewSharedInformerFactory(client, informerResync),
		dirty:   map[string]time.Time{}, known: map[string][]vcenter.Entity{}, noPV: map[string]time.Time{},
		orphans: map[string]Orphan{}, missing: map[string]Missing{},
		wake: make(chan struct{}, 1), full: make(chan struct{}, 1), check: make(chan struct{}, 1),
	}
	pvInf := s.factory.Core().V1().PersistentVolumes()
	pvcInf := s.factory.Core().V1().PersistentVolumeClaims()
	podInf := s.factory.Core().V1().Pods()
	// Pods are the cluster's largest set: keep only what the syncer reads.
	if err := podInf.Informer().SetTransform(slimPod); err != nil {
		return nil, err
	}
	if err := pvInf.Informer().AddIndexers(cache.Indexers{byHandle: s.handleIndex}); err != nil {
		return nil, err
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{byClaim: claimIndex}); err != nil {
		return nil, err
	}
	s.pvs, s.pvcs = pvInf.Lister(), pvcInf.Lister()
	s.pvIdx, s.podIdx = pvInf.Informer().GetIndexer(), podInf.Informer().GetIndexer()
	handlers := []struct {
		inf cache.SharedIndexInformer
		on  func(obj any)
	}{
		{pvInf.Informer(), s.onPV}, {pvcInf.Informer(), s.onPVC}, {podInf.Informer(), s.onPod},
	}
	for _, h := range handlers {
		on := h.on
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    on,
			UpdateFunc: func(old, obj any) { on(old); on(obj) },
			DeleteFunc: on,
		}); err != nil {
			return nil, err
		}
		s.synced = append(s.synced, h.inf.HasSynced)
	}
	return s, nil
}

// slimPod drops what the syncer does not read from a pod.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return obj, nil
	}
	out := &v1.Pod{}
	out.Name, out.Namespace, out.UID, out.ResourceVersion = pod.Name, pod.Namespace, pod.UID, pod.ResourceVersion
	out.DeletionTimestamp = pod.DeletionTimestamp
	out.Spec.NodeName = pod.Spec.NodeName
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
			out.Spec.Volumes = append(out.Spec.Volumes, v1.Volume{Name: v.Name, VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: v.PersistentVolumeClaim, Ephemeral: v.Ephemeral}})
		}
	}
	out.Status.Phase = pod.Status.Phase
	return out, nil
}

func (s *Syncer) handleIndex(obj any) ([]string, error) {
	if h := s.handle(obj); h != "" {
		return []string{h}, nil
	}
	return nil, nil
}

func claimIndex(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, c := range Claims(pod) {
		out = append(out, pod.Namespace+"/"+c)
	}
	return out, nil
}

// handle is the CNS volume ID of a PV of this driver, "" for another's.
func (s *Syncer) handle(obj any) string {
	pv, ok := unwrap(obj).(*v1.PersistentVolume)
	if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != s.opts.Driver {
		return ""
	}
	return pv.Spec.CSI.VolumeHandle
}

// unwrap takes the object out of a delete event whose final state the
// informer did not see.
func unwrap(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

func (s *Syncer) onPV(obj any) {
	if h := s.handle(obj); h != "" {
		s.markDirty(h)
	}
}

func (s *Syncer) onPVC(obj any) {
	pvc, ok := unwrap(obj).(*v1.PersistentVolumeClaim)
	if !ok || pvc.Spec.VolumeName == "" {
		return
	}
	s.markPVNamed(pvc.Spec.VolumeName)
}

func (s *Syncer) onPod(obj any) {
	pod, ok := unwrap(obj).(*v1.Pod)
	if !ok {
		return
	}
	for _, c := range Claims(pod) {
		if pvc, err := s.pvcs.PersistentVolumeClaims(pod.Namespace).Get(c); err == nil && pvc.Spec.VolumeName != "" {
			s.markPVNamed(pvc.Spec.VolumeName)
		}
	}
}

func (s *Syncer) markPVNamed(name string) {
	if pv, err := s.pvs.Get(name); err == nil {
		s.onPV(pv)
	}
}

// markDirty records a change of the volume and wakes the worker.
func (s *Syncer) markDirty(ids ...string) {
	now := time.Now()
	s.mu.Lock()
	for _, id := range ids {
		if _, ok := s.dirty[id]; !ok {
			s.dirty[id] = now
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// objects is what the informers' caches hold of a volume now.
func (s *Syncer) objects(volumeID string) Objects {
	var o Objects
	list, _ := s.pvIdx.ByIndex(byHandle, volumeID)
	for _, obj := range list {
		pv := obj.(*v1.PersistentVolume)
		if o.PV == nil || pv.Name < o.PV.Name {
			o.PV = pv // one PV per volume in a cluster; the first by name if not
		}
	}
	if o.PV == nil || o.PV.Spec.ClaimRef == nil {
		return o
	}
	ref := o.PV.Spec.ClaimRef
	if pvc, err := s.pvcs.PersistentVolumeClaims(ref.Namespace).Get(ref.Name); err == nil {
		o.PVC = pvc
	}
	pods, _ := s.podIdx.ByIndex(byClaim, ref.Namespace+"/"+ref.Name)
	for _, obj := range pods {
		o.Pods = append(o.Pods, obj.(*v1.Pod))
	}
	sort.Slice(o.Pods, func(i, j int) bool { return o.Pods[i].Name < o.Pods[j].Name })
	return o
}

// Run starts the informers, waits for their first listings, runs a full
// sync and then keeps CNS current until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("listing PVs, claims and pods from the Kubernetes API: %w", ctx.Err())
	}
	klog.InfoS("Metadata syncer started: CNS will hold each volume's PV, claim and pods", "fullSyncInterval", s.opts.FullSyncInterval)
	tick := time.NewTicker(s.opts.FullSyncInterval)
	defer tick.Stop()
	backoff := time.Duration(0)
	var retry <-chan time.Time
	// First a full sync: it reads every volume's CNS state in one listing
	// and writes what the informers' first listings changed.
	if err := panics.Call("metadata full sync", func() error { return s.fullSync(ctx) }); err != nil {
		backoff = s.nextBackoff(backoff)
		klog.ErrorS(err, "Full sync of CNS metadata failed; it runs again after a pause", "in", backoff)
		time.AfterFunc(backoff, s.requestFullSync)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.requestFullSync()
			continue
		case <-s.check:
			if err := panics.Call("orphan check", func() error { return s.checkOrphans(ctx) }); err != nil {
				klog.ErrorS(err, "Checking volumes without a PV failed; the next full sync does")
			}
			continue
		case <-s.full:
			if err := panics.Call("metadata full sync", func() error { return s.fullSync(ctx) }); err != nil && ctx.Err() == nil {
				backoff = s.nextBackoff(backoff)
				klog.ErrorS(err, "Full sync of CNS metadata failed; it runs again after a pause", "in", backoff)
				time.AfterFunc(backoff, s.requestFullSync)
				continue
			}
		case <-s.wake:
			if retry != nil {
				continue // a retry is scheduled: changes wait for it
			}
			if !s.gather(ctx) {
				return nil
			}
		case <-retry:
			retry = nil
		}
		if err := panics.Call("metadata update", func() error { _, err := s.sendDirty(ctx); return err }); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, panics.ErrPanic) {
				// What the panic took off the dirty set, the full sync puts back.
				time.AfterFunc(s.nextBackoff(backoff), s.requestFullSync)
			}
			backoff = s.nextBackoff(backoff)
			klog.ErrorS(err, "Updating CNS metadata failed; retrying", "in", backoff)
			retry = time.After(backoff)
			continue
		}
		backoff = 0
	}
}

func (s *Syncer) nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return firstBackoff
	}
	return min(2*d, s.opts.MaxBackoff)
}

func (s *Syncer) requestFullSync() {
	select {
	case s.full <- struct{}{}:
	default:
	}
}

// gather waits until changes stop coming for Gather (up to maxGather):
// the changes of a burst (a StatefulSet scaled, a namespace deleted, a
// label put on many claims) go out together.
func (s *Syncer) gather(ctx context.Context) bool {
	start := time.Now()
	s.mu.Lock()
	n := len(s.dirty)
	s.mu.Unlock()
	for {
		if !sleep(ctx, s.opts.Gather) {
			return false
		}
		s.mu.Lock()
		now := len(s.dirty)
		s.mu.Unlock()
		if now == n || time.Since(start) >= maxGather {
			return true
		}
		n = now
	}
}

// maxGather bounds how long a stream of changes is gathered before what
// came goes out.
const maxGather = 2 * time.Second

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sendDirty takes the dirty volumes and writes what changed; it returns
// how many volumes it wrote. Volumes whose CNS state the syncer does not
// know yet are read first (by ID, in batches). On error the volumes not
// written are dirty again.
func (s *Syncer) sendDirty(ctx context.Context) (int, error) {
	s.mu.Lock()
	batch := s.dirty
	s.dirty = map[string]time.Time{}
	var unknown []string
	for id := range batch {
		if _, ok := s.known[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	s.mu.Unlock()
	if len(batch) == 0 {
		return 0, nil
	}
	putBack := func(ids map[string]time.Time) {
		s.mu.Lock()
		for id, t := range ids {
			if old, ok := s.dirty[id]; !ok || t.Before(old) {
				s.dirty[id] = t
			}
		}
		s.mu.Unlock()
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		vols, err := s.cns.VolumesByID(ctx, unknown)
		if err != nil {
			putBack(batch)
			return 0, err
		}
		found := map[string]bool{}
		var notFound []string
		for _, v := range vols {
			found[v.ID] = true
		}
		for _, id := range unknown {
			if !found[id] {
				notFound = append(notFound, id)
			}
		}
		adopted, unsure := s.adopt(ctx, notFound)
		vols = append(vols, adopted...)
		if len(unsure) > 0 {
			put := map[string]time.Time{}
			for id := range unsure {
				put[id] = batch[id]
				delete(batch, id)
			}
			putBack(put)
		}
		s.mu.Lock()
		for _, v := range vols {
			s.known[v.ID] = v.Entities
			found[v.ID] = true
		}
		s.mu.Unlock()
		for _, id := range notFound {
			if !found[id] && !unsure[id] {
				s.volumeGone(id)
				delete(batch, id)
			}
		}
	}
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var updates []vcenter.MetadataUpdate
	wants := map[string][]vcenter.Entity{}
	changed := false
	s.mu.Lock()
	for _, id := range ids {
		o := s.objects(id)
		want := Desired(o)
		set, del := Diff(want, s.known[id])
		if o.PV == nil {
			s.noteNoPV(id)
		} else if s.hasPV(id, o.PV.Name) {
			changed = true
		}
		if len(set)+len(del) == 0 {
			continue
		}
		wants[id] = want
		updates = append(updates, vcenter.MetadataUpdate{VolumeID: id, Set: set, Delete: del})
	}
	s.mu.Unlock()
	if changed {
		s.findingsChanged()
	}
	if len(updates) == 0 {
		return 0, nil
	}
	return len(updates), s.write(ctx, updates, wants, batch, putBack)
}

// write sends the updates, metadataBatch volumes per call (the client
// splits them); it records what CNS now holds and puts back what failed.
func (s *Syncer) write(ctx context.Context, updates []vcenter.MetadataUpdate, wants map[string][]vcenter.Entity, since map[string]time.Time, putBack func(map[string]time.Time)) error {
	const perCall = 100
	for start := 0; start < len(updates); start += perCall {
		chunk := updates[start:min(start+perCall, len(updates))]
		failed, err := s.cns.UpdateMetadata(ctx, chunk)
		var lags []time.Duration
		var gone []string
		again := map[string]time.Time{}
		s.mu.Lock()
		for _, u := range chunk {
			ferr, bad := failed[u.VolumeID]
			switch {
			case !bad:
				s.known[u.VolumeID] = wants[u.VolumeID]
				lags = append(lags, time.Since(since[u.VolumeID]))
			case errors.Is(ferr, vcenter.ErrVolumeNotFound):
				gone = append(gone, u.VolumeID)
			default:
				// Unknown what CNS holds now: read it again before the retry.
				delete(s.known, u.VolumeID)
				again[u.VolumeID] = since[u.VolumeID]
				if err == nil {
					klog.ErrorS(ferr, "CNS refused a metadata update", "volumeID", u.VolumeID)
				}
			}
		}
		s.mu.Unlock()
		for _, id := range gone {
			s.volumeGone(id)
		}
		if o := s.opts.Observer; o != nil {
			o.MetadataSent(len(chunk), err != nil, lags)
		}
		if err != nil {
			for _, u := range updates[start+len(chunk):] {
				again[u.VolumeID] = since[u.VolumeID]
			}
			putBack(again)
			return err
		}
		if len(again) > 0 {
			putBack(again)
			return fmt.Errorf("CNS refused the metadata of %d volumes", len(again))
		}
	}
	return nil
}

// PVs lists the PVs of this driver in the informer's cache.
func (s *Syncer) driverPVs() []*v1.PersistentVolume {
	all, _ := s.pvs.List(labels.Everything())
	var out []*v1.PersistentVolume
	for _, pv := range all {
		if s.handle(pv) != "" {
			out = append(out, pv)
		}
	}
	return out
}
