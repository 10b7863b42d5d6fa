package syncer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// fullSync reads every CNS volume of this cluster with its metadata (the
// CNS state it then knows), and the PVs of this driver from the
// informers' caches; it writes what drifted, and finds orphans and PVs
// whose volume is gone. A PV whose volume is not among the cluster's is
// looked up by ID: a volume of another cluster that this one uses through
// a static PV is the cluster's once its metadata is written.
func (s *Syncer) fullSync(ctx context.Context) (err error) {
	start := time.Now()
	updated := 0
	defer func() {
		if o := s.opts.Observer; o != nil {
			o.FullSync(time.Since(start), updated, err)
		}
	}()
	vols, _, err := s.cns.ListVolumes(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("list this cluster's CNS volumes: %w", err)
	}
	pvs := s.driverPVs()
	byHandle := make(map[string]*v1.PersistentVolume, len(pvs))
	for _, pv := range pvs {
		byHandle[pv.Spec.CSI.VolumeHandle] = pv
	}
	listed := make(map[string]vcenter.Volume, len(vols))
	s.mu.Lock()
	for _, v := range vols {
		listed[v.ID] = v
		s.known[v.ID] = v.Entities
	}
	s.mu.Unlock()
	var notListed []string
	pvVolumes := map[string]vcenter.Volume{} // the volumes PVs name, where they exist
	for h := range byHandle {
		if v, ok := listed[h]; ok {
			pvVolumes[h] = v
		} else {
			notListed = append(notListed, h)
		}
	}
	sort.Strings(notListed)
	found := map[string]bool{}
	if len(notListed) > 0 {
		others, err := s.cns.VolumesByID(ctx, notListed)
		if err != nil {
			return fmt.Errorf("look up the volumes of %d PVs: %w", len(notListed), err)
		}
		got := map[string]bool{}
		for _, v := range others {
			got[v.ID] = true
		}
		var absent []string
		for _, id := range notListed {
			if !got[id] {
				absent = append(absent, id)
			}
		}
		adopted, unsure := s.adopt(ctx, absent)
		others = append(others, adopted...)
		for id := range unsure {
			found[id] = true // not known to be missing
		}
		s.mu.Lock()
		for _, v := range others {
			s.known[v.ID] = v.Entities
			found[v.ID] = true
			pvVolumes[v.ID] = v
		}
		s.mu.Unlock()
	}
	s.reportHealth(byHandle, pvVolumes, found)

	var missing []Missing
	for _, h := range notListed {
		if pv := byHandle[h]; !found[h] && live(pv) {
			missing = append(missing, missingOf(pv))
		}
	}
	now := time.Now()
	s.mu.Lock()
	s.missing = map[string]Missing{}
	for _, m := range missing {
		s.missing[m.PV] = m
	}
	for id := range s.noPV {
		if _, ok := listed[id]; !ok {
			delete(s.noPV, id)
		}
	}
	for id := range s.orphans {
		if _, ok := listed[id]; !ok || byHandle[id] != nil {
			delete(s.orphans, id)
		}
	}
	var newOrphans []Orphan
	for id, v := range listed {
		if byHandle[id] != nil {
			delete(s.noPV, id)
			continue
		}
		s.noteNoPV(id)
		if _, known := s.orphans[id]; !known && now.Sub(s.noPV[id]) >= s.opts.OrphanGrace {
			o := Orphan{VolumeID: id, Name: v.Name, Datastore: v.DatastoreURL, Since: s.noPV[id]}
			s.orphans[id] = o
			newOrphans = append(newOrphans, o)
		}
	}
	s.mu.Unlock()
	logOrphans(newOrphans)
	s.reportMissing(missing)

	// Every volume once more through the worker's path: what differs from
	// what was just read is written.
	ids := make([]string, 0, len(listed)+len(found))
	for id := range listed {
		ids = append(ids, id)
	}
	for id := range found {
		ids = append(ids, id)
	}
	s.markDirty(ids...)
	updated, err = s.sendDirty(ctx)
	s.mu.Lock()
	s.last = Report{Volumes: len(vols), PVs: len(pvs), Updated: updated, At: time.Now()}
	orphans, nMissing := len(s.orphans), len(s.missing)
	s.mu.Unlock()
	took := time.Since(start)
	klog.InfoS("Full sync of CNS metadata done", "volumes", len(vols), "pvs", len(pvs), "updated", updated,
		"orphans", orphans, "missing", nMissing, "took", took.Round(time.Millisecond), "err", err)
	if o := s.opts.Observer; o != nil {
		o.Findings(orphans, nMissing)
	}
	return err
}

// reportHealth tells the observer how many bound PVs of this driver have
// an accessible volume and how many an inaccessible one, by CNS's health
// status of the volume (green or yellow: accessible; red, none, or no such
// volume: inaccessible; unknown: not counted), as the upstream driver's
// volume health gauge counts them. vols holds the volumes the PVs name
// that exist; a PV whose volume is not there but found (not known to be
// missing: a lookup failed) is not counted.
func (s *Syncer) reportHealth(pvs map[string]*v1.PersistentVolume, vols map[string]vcenter.Volume, found map[string]bool) {
	o := s.opts.Observer
	if o == nil {
		return
	}
	accessible, inaccessible := 0, 0
	for h, pv := range pvs {
		if pv.Status.Phase != v1.VolumeBound || pv.Spec.ClaimRef == nil {
			continue
		}
		v, ok := vols[h]
		switch {
		case !ok && found[h]:
		case !ok:
			inaccessible++
		case v.Health == healthGreen || v.Health == healthYellow:
			accessible++
		case v.Health == healthUnknown:
		default:
			inaccessible++
		}
	}
	o.VolumeHealth(accessible, inaccessible)
}

// CNS's health statuses of a volume (SPBM's PbmHealthStatusForEntity).
const (
	healthGreen   = "green"
	healthYellow  = "yellow"
	healthUnknown = "unknown"
)

// adopt registers with CNS the first-class disks that live PVs of this
// driver name and that are no CNS volume yet: static PVs of disks made in
// vSphere, which the driver registers at their first attach (and the
// upstream syncer when their PV appears); the admin sees them in the
// Container Volumes view from the start, and they are not missing. It
// returns the volumes it registered, and the handles it could not tell
// about (logged; the next pass tries again); a handle that is no disk
// either is in neither (missing).
func (s *Syncer) adopt(ctx context.Context, ids []string) (out []vcenter.Volume, unsure map[string]bool) {
	unsure = map[string]bool{}
	for _, id := range ids {
		o := s.objects(id)
		if o.PV == nil || !live(o.PV) {
			continue
		}
		if _, err := uuid.Parse(id); err != nil {
			continue // not a first-class disk's ID
		}
		v, err := s.cns.RegisterDisk(ctx, id, vcenter.StaticVolumeName(id))
		switch {
		case err == nil:
			klog.InfoS("Registered the first-class disk of a static PV with CNS", "volumeID", id, "pv", o.PV.Name)
			out = append(out, v)
		case !errors.Is(err, vcenter.ErrVolumeNotFound):
			klog.ErrorS(err, "Registering the first-class disk of a static PV with CNS failed; trying again later", "volumeID", id, "pv", o.PV.Name)
			unsure[id] = true
		}
	}
	return out, unsure
}

// noteNoPV records that a CNS volume of the cluster has no PV (s.mu
// held); the first time, it asks for a second look after OrphanGrace.
func (s *Syncer) noteNoPV(id string) {
	if _, ok := s.noPV[id]; ok {
		return
	}
	s.noPV[id] = time.Now()
	time.AfterFunc(s.opts.OrphanGrace, func() {
		select {
		case s.check <- struct{}{}:
		default:
		}
	})
}

// hasPV: the volume has a PV (again): neither orphan nor candidate (s.mu
// held). It says whether that changed the findings.
func (s *Syncer) hasPV(id, pv string) bool {
	delete(s.noPV, id)
	_, orphan := s.orphans[id]
	_, missing := s.missing[pv]
	if orphan {
		delete(s.orphans, id)
		klog.InfoS("A volume reported as an orphan has a PV now", "volumeID", id, "pv", pv)
	}
	delete(s.missing, pv)
	return orphan || missing
}

// checkOrphans takes a second look at the volumes that have had no PV for
// OrphanGrace: those that still exist and still have none are orphans.
func (s *Syncer) checkOrphans(ctx context.Context) error {
	s.mu.Lock()
	var due []string
	for id, since := range s.noPV {
		if _, done := s.orphans[id]; !done && time.Since(since) >= s.opts.OrphanGrace {
			due = append(due, id)
		}
	}
	s.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	sort.Strings(due)
	vols, err := s.cns.VolumesByID(ctx, due)
	if err != nil {
		return err
	}
	exists := map[string]vcenter.Volume{}
	for _, v := range vols {
		exists[v.ID] = v
	}
	var found []Orphan
	s.mu.Lock()
	for _, id := range due {
		v, ok := exists[id]
		switch {
		case !ok:
			delete(s.noPV, id) // deleted meanwhile (a claim's volume, reclaimed)
		case s.objects(id).PV != nil:
			delete(s.noPV, id)
		default:
			o := Orphan{VolumeID: id, Name: v.Name, Datastore: v.DatastoreURL, Since: s.noPV[id]}
			s.orphans[id] = o
			found = append(found, o)
		}
	}
	s.mu.Unlock()
	logOrphans(found)
	s.findingsChanged()
	return nil
}

func logOrphans(os []Orphan) {
	for _, o := range os {
		klog.InfoS("A CNS volume of this cluster has no PersistentVolume (an orphan: its PV was deleted with reclaim policy Retain, or the cluster's state was restored from an older backup); its disk is kept. Delete it in vCenter, or make a static PV for it.",
			"volumeID", o.VolumeID, "name", o.Name, "datastore", o.Datastore, "withoutPVSince", o.Since.UTC().Format(time.RFC3339))
	}
}

// volumeGone: a volume some change concerned does not exist in CNS. If a
// PV of this driver still names it, that PV is reported as missing its
// volume.
func (s *Syncer) volumeGone(id string) {
	s.mu.Lock()
	delete(s.known, id)
	delete(s.noPV, id)
	o := s.objects(id)
	var m []Missing
	if o.PV != nil && live(o.PV) {
		if _, known := s.missing[o.PV.Name]; !known {
			s.missing[o.PV.Name] = missingOf(o.PV)
			m = append(m, s.missing[o.PV.Name])
		}
	}
	s.mu.Unlock()
	if len(m) > 0 {
		s.reportMissing(m)
		s.findingsChanged()
	}
}

// live: a PV that should have its volume (not being released or deleted).
func live(pv *v1.PersistentVolume) bool {
	if pv.DeletionTimestamp != nil {
		return false
	}
	return pv.Status.Phase == v1.VolumeBound || pv.Status.Phase == v1.VolumeAvailable
}

func missingOf(pv *v1.PersistentVolume) Missing {
	m := Missing{PV: pv.Name, VolumeID: pv.Spec.CSI.VolumeHandle}
	if r := pv.Spec.ClaimRef; r != nil && pv.Status.Phase == v1.VolumeBound {
		m.Claim = r.Namespace + "/" + r.Name
	}
	return m
}

// reportMissing logs and records an event on each PV.
func (s *Syncer) reportMissing(ms []Missing) {
	for _, m := range ms {
		klog.ErrorS(nil, "A PersistentVolume of this driver names a CNS volume that does not exist (deleted in vCenter?); pods cannot use it. The syncer does not re-create it.",
			"pv", m.PV, "volumeID", m.VolumeID, "claim", m.Claim)
		if r := s.opts.Recorder; r != nil {
			if pv, err := s.pvs.Get(m.PV); err == nil {
				r.Eventf(pv, v1.EventTypeWarning, "VolumeMissing", "CNS volume %s does not exist in vCenter (deleted there?): the data of this PV cannot be reached. Nothing re-creates it.", m.VolumeID)
			}
		}
	}
}

// findingsChanged tells the observer the counts.
func (s *Syncer) findingsChanged() {
	if o := s.opts.Observer; o != nil {
		s.mu.Lock()
		n, m := len(s.orphans), len(s.missing)
		s.mu.Unlock()
		o.Findings(n, m)
	}
}

// LastReport is what the syncer knows now: the last full sync's counts,
// the orphans and the PVs missing their volume, sorted.
func (s *Syncer) LastReport() Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.last
	for _, o := range s.orphans {
		r.Orphans = append(r.Orphans, o)
	}
	for _, m := range s.missing {
		r.Missing = append(r.Missing, m)
	}
	sortFindings(&r)
	return r
}

func sortFindings(r *Report) {
	sort.Slice(r.Orphans, func(i, j int) bool { return r.Orphans[i].VolumeID < r.Orphans[j].VolumeID })
	sort.Slice(r.Missing, func(i, j int) bool { return r.Missing[i].PV < r.Missing[j].PV })
}

// Find is the listing command's check, without a syncer: the CNS volumes
// of the cluster (vols) that no PV of driver names, and the PVs of driver
// whose volume is neither among vols nor in exists (looked up by ID: of
// another cluster). No grace: a volume being provisioned right now shows
// as an orphan for the moment its PV takes to be made.
func Find(vols []vcenter.Volume, pvs []v1.PersistentVolume, driver string, exists map[string]bool) Report {
	r := Report{Volumes: len(vols), At: time.Now()}
	handles := map[string]bool{}
	listed := map[string]bool{}
	for _, v := range vols {
		listed[v.ID] = true
	}
	for i := range pvs {
		pv := &pvs[i]
		if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driver {
			continue
		}
		r.PVs++
		h := pv.Spec.CSI.VolumeHandle
		handles[h] = true
		if !listed[h] && !exists[h] && live(pv) {
			r.Missing = append(r.Missing, missingOf(pv))
		}
	}
	for _, v := range vols {
		if !handles[v.ID] {
			r.Orphans = append(r.Orphans, Orphan{VolumeID: v.ID, Name: v.Name, Datastore: v.DatastoreURL})
		}
	}
	sortFindings(&r)
	return r
}
