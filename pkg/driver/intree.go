package driver

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// Volumes and StorageClasses of the in-tree vSphere plugin
// (kubernetes.io/vsphere-volume), which Kubernetes translates for this
// driver (k8s.io/csi-translation-lib, plugins/vsphere_volume.go; CSI
// migration is GA and always on):
//
//   - a PV's vsphereVolume.volumePath, "[datastore] kubevols/x.vmdk",
//     becomes the CSI volume ID. Every controller call that takes a volume
//     ID resolves such a path to its CNS volume (inTreeVolume): the volume
//     named vcenter.InTreeVolumeName(path), found by name, or, on first
//     use, the disk registered with CNS under that name (in place: no copy,
//     no move). The mapping is vCenter's, so a restarted or second
//     controller finds the same volume. Node calls need nothing: the
//     publish context carries the disk UUID, as for any volume.
//   - a StorageClass's parameters arrive translated: csimigration=true,
//     datastore → datastore-migrationparam, diskformat →
//     diskformat-migrationparam, the vSAN capabilities → *-migrationparam,
//     storagepolicyname and fstype as they are (inTreeParams).
//   - the provisioner records the volume as an in-tree PV whose
//     volumePath is the volume context's "initialvolumefilepath"
//     (TranslateCSIPVToInTree), not the volume ID; later calls then come
//     with that path. CreateVolume therefore makes an in-tree style disk,
//     "[ds] kubevols/<name>.vmdk", registers it, and answers that path both
//     as the volume ID and in initialvolumefilepath (createInTree).

// The parameters of a translated in-tree StorageClass.
const (
	paramCSIMigration       = "csimigration"
	paramDatastoreMig       = "datastore-migrationparam"
	paramDiskFormatMig      = "diskformat-migrationparam"
	volumeCtxInitialPath    = "initialvolumefilepath"
	inTreeFolder            = "kubevols"
	defaultInTreeDiskFormat = "thin" // the in-tree plugin's default diskformat
)

// vsanMigrationParams are the in-tree plugin's inline vSAN capabilities,
// which it turned into a policy of its own per disk. CNS takes vSAN rules
// only from a storage policy.
func vsanMigrationParams() []string {
	return []string{
		"hostfailurestotolerate-migrationparam", "forceprovisioning-migrationparam", "cachereservation-migrationparam",
		"diskstripes-migrationparam", "objectspacereservation-migrationparam", "iopslimit-migrationparam",
	}
}

// inTreeClass is what a translated in-tree StorageClass asks beyond the
// driver's own parameters.
type inTreeClass struct {
	datastore  string // a datastore name; "" for any the policy allows
	diskFormat string // thin, zeroedthick or eagerzeroedthick
	path       string // set by createInTree: the disk it made or found
}

// inTreeParams takes the translated in-tree parameters out of a
// StorageClass's: class is nil when csimigration is not "true"; rest is
// what parseVolumeParams reads. Refusals are InvalidArgument and name the
// parameter, as the in-tree StorageClass spells it, and what to do.
func inTreeParams(in map[string]string) (class *inTreeClass, rest map[string]string, err error) {
	rest = map[string]string{}
	mig := map[string]string{}
	for k, v := range in {
		key := strings.ToLower(k)
		switch {
		case key == paramCSIMigration:
			switch strings.ToLower(v) {
			case "true":
				class = &inTreeClass{diskFormat: defaultInTreeDiskFormat}
			case "false":
			default:
				return nil, nil, status.Errorf(codes.InvalidArgument, "parameter %s=%q: only \"true\" (set by Kubernetes for a StorageClass of kubernetes.io/vsphere-volume) or \"false\"", k, v)
			}
		case strings.HasSuffix(key, "-migrationparam"):
			mig[key] = v
		default:
			rest[k] = v
		}
	}
	keys := make([]string, 0, len(mig))
	for k := range mig {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if class == nil && len(keys) > 0 {
		return nil, nil, status.Errorf(codes.InvalidArgument,
			"parameters %s are those Kubernetes makes from a StorageClass of the in-tree plugin (kubernetes.io/vsphere-volume), and come with csimigration=true; "+
				"a StorageClass of %s names a datastore with datastoreurl and vSAN rules with storagepolicyname", strings.Join(keys, ", "), Name)
	}
	for _, k := range keys {
		v := mig[k]
		inTree := strings.TrimSuffix(k, "-migrationparam")
		switch {
		case k == paramDatastoreMig:
			class.datastore = strings.TrimSpace(v)
		case k == paramDiskFormatMig:
			f := strings.ToLower(strings.TrimSpace(v))
			if !slices.Contains(vcenter.DiskFormats(), f) {
				return nil, nil, status.Errorf(codes.InvalidArgument,
					"StorageClass parameter diskformat %q (%s): the in-tree plugin's formats are %s", v, k, strings.Join(vcenter.DiskFormats(), ", "))
			}
			class.diskFormat = f
		case slices.Contains(vsanMigrationParams(), k):
			return nil, nil, status.Errorf(codes.InvalidArgument,
				"StorageClass parameter %s=%q (%s) is not supported: the in-tree plugin made a vSAN policy per disk from it, CNS takes vSAN rules only from a storage policy; "+
					"make a storage policy with that rule in vCenter and name it in storagepolicyname instead", inTree, v, k)
		default:
			return nil, nil, status.Errorf(codes.InvalidArgument,
				"StorageClass parameter %s (%s) is not one Kubernetes translates from the in-tree plugin (%s, %s, %s)",
				inTree, k, paramDatastoreMig, paramDiskFormatMig, strings.Join(vsanMigrationParams(), ", "))
		}
	}
	return class, rest, nil
}

// inTreeDiskPath is where createInTree puts the disk of the volume name on
// a datastore.
func inTreeDiskPath(datastore, name string) vcenter.DiskPath {
	return vcenter.DiskPath{Datastore: datastore, File: inTreeFolder + "/" + name + ".vmdk"}
}

// createInTree makes the volume of a translated in-tree StorageClass: a
// VMDK of the class's disk format at "[ds] kubevols/<name>.vmdk" on a
// datastore placement picks (the class's datastore when it names one),
// registered with CNS under InTreeVolumeName of that path, with the
// policy. The look-up before create asks for name's disk on every
// datastore it may be on, in one query (the look-ups coalesce).
func (d *Driver) createInTree(ctx context.Context, name string, p volumeParams, class *inTreeClass, size int64, r *csi.CapacityRange) (vcenter.Volume, error) {
	policy, err := d.policy(ctx, p.PolicyName)
	if err != nil {
		return vcenter.Volume{}, err
	}
	all, err := d.vc.Datastores(ctx, policy.ID)
	if err != nil {
		return vcenter.Volume{}, err
	}
	if class.datastore == "" && p.DatastoreURL == "" && d.opts.InTreeDatastoreURL != "" {
		// csi-vsphere.conf's migration-datastore-url: the datastore of an
		// in-tree class that names none, as the upstream driver reads it.
		p.DatastoreURL = d.opts.InTreeDatastoreURL
	}
	if class.datastore != "" {
		i := slices.IndexFunc(all, func(ds vcenter.Datastore) bool { return ds.Name == class.datastore })
		if i < 0 {
			names := make([]string, 0, len(all))
			for _, ds := range all {
				names = append(names, ds.Name)
			}
			return vcenter.Volume{}, status.Errorf(codes.InvalidArgument,
				"StorageClass parameter datastore %q (%s): no datastore of that name in the configured datacenters (they have %s)",
				class.datastore, paramDatastoreMig, strings.Join(names, ", "))
		}
		if p.DatastoreURL != "" && !sameURL(p.DatastoreURL, all[i].URL) {
			return vcenter.Volume{}, status.Errorf(codes.InvalidArgument,
				"StorageClass parameters datastore %q and datastoreurl %q name different datastores", class.datastore, p.DatastoreURL)
		}
		p.DatastoreURL = all[i].URL
	}
	if v, path, ok, err := d.findInTree(ctx, name, all, class.datastore); err != nil || ok {
		if err == nil {
			class.path = path.String()
			err = sameVolume(v, policy, size, r)
		}
		return v, err
	}
	pl, err := d.placeInTopology(all, p, size)
	if err != nil {
		return vcenter.Volume{}, err
	}
	klog.InfoS("Placing in-tree volume", "name", name, "policy", p.PolicyName, "size", describeSize(size),
		"datastore", pl.Candidates[0].Name, "diskFormat", class.diskFormat, "why", pl.Why)
	var short []error
	for _, ds := range pl.Candidates {
		path := inTreeDiskPath(ds.Name, name)
		err := d.vc.CreateInTreeDisk(ctx, path, size, class.diskFormat)
		if errors.Is(err, vcenter.ErrInsufficientSpace) {
			short = append(short, err)
			continue
		}
		if err != nil {
			return vcenter.Volume{}, err
		}
		v, err := d.vc.RegisterInTreeDisk(ctx, vcenter.InTreeSpec{
			Path: path, Name: vcenter.InTreeVolumeName(path), PolicyID: policy.ID,
			PVCName: p.PVCName, PVCNamespace: p.PVCNamespace, PVName: p.PVName,
		})
		if err != nil {
			return vcenter.Volume{}, err
		}
		class.path = path.String()
		klog.InfoS("Created in-tree volume", "volumeID", v.ID, "path", class.path, "name", name, "size", describeSize(v.CapacityBytes))
		return v, nil
	}
	return vcenter.Volume{}, hint(errors.Join(short...), "no datastore%s had room for %s", compatibleWith(p.PolicyName), describeSize(size))
}

// findInTree looks for the volume createInTree made for name on any of
// the datastores (only on datastore when given).
func (d *Driver) findInTree(ctx context.Context, name string, all []vcenter.Datastore, datastore string) (vcenter.Volume, vcenter.DiskPath, bool, error) {
	var paths []vcenter.DiskPath
	for _, ds := range all {
		if datastore == "" || ds.Name == datastore {
			paths = append(paths, inTreeDiskPath(ds.Name, name))
		}
	}
	vols := make([]vcenter.Volume, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vols[i], errs[i] = d.vc.FindVolumeByName(ctx, vcenter.InTreeVolumeName(p))
		}()
	}
	wg.Wait()
	for i := range paths {
		switch {
		case errs[i] == nil:
			return vols[i], paths[i], true, nil
		case !errors.Is(errs[i], vcenter.ErrVolumeNotFound):
			return vcenter.Volume{}, vcenter.DiskPath{}, false, errs[i]
		}
	}
	return vcenter.Volume{}, vcenter.DiskPath{}, false, nil
}

// inTreeVolume resolves a volume ID that is an in-tree disk's path to its
// CNS volume's ID; any other ID is returned as it is. With register, a
// disk that is no CNS volume yet is registered (first use); without, it
// is ErrVolumeNotFound. A path that names no disk: ErrVolumeNotFound.
// Errors are the layers' (the caller's toStatus picks the code).
func (d *Driver) inTreeVolume(ctx context.Context, id string, register bool) (string, error) {
	path, ok := vcenter.ParseDiskPath(id)
	if !ok {
		return id, nil
	}
	name := vcenter.InTreeVolumeName(path)
	v, err := d.vc.FindVolumeByName(ctx, name)
	if err == nil {
		return v.ID, nil
	}
	if !errors.Is(err, vcenter.ErrVolumeNotFound) || !register {
		return "", hint(err, "in-tree volume %s", id)
	}
	// One registration of a path at a time in this controller; another
	// controller's meets CNS's "already registered".
	release, err := d.inflight.acquire("in-tree disk " + path.String())
	if err != nil {
		return "", err
	}
	defer release()
	v, err = d.vc.RegisterInTreeDisk(ctx, vcenter.InTreeSpec{Path: path, Name: name})
	if err != nil {
		return "", hint(err, "in-tree volume %s (registering its disk with CNS)", id)
	}
	klog.InfoS("In-tree volume resolved", "path", id, "volumeID", v.ID)
	return v.ID, nil
}

// inTreeID is the volume ID Kubernetes knows a volume by: the disk's path
// for an in-tree disk (a volume named by InTreeVolumeName, or one whose
// disk is in the in-tree plugin's folder, registered by another driver),
// else the CNS ID. ListVolumes answers it, so that the attacher matches
// its VolumeAttachments.
func inTreeID(v vcenter.Volume) string {
	if v.DiskPath == "" || v.File {
		return v.ID
	}
	p, ok := vcenter.ParseDiskPath(v.DiskPath)
	if !ok {
		return v.ID
	}
	if v.Name == vcenter.InTreeVolumeName(p) || strings.HasPrefix(p.File, inTreeFolder+"/") {
		return p.String()
	}
	return v.ID
}

// inTreeResult makes a created in-tree volume's answer what the
// provisioner needs: the path as the volume ID and in the volume context's
// initialvolumefilepath, which becomes the in-tree PV's volumePath.
func inTreeResult(out *csi.Volume, class *inTreeClass) {
	if class == nil {
		return
	}
	out.VolumeId = class.path
	out.VolumeContext[volumeCtxInitialPath] = class.path
}

// refuseInTree refuses what a translated in-tree StorageClass can't ask
// for: file volumes and content sources.
func refuseInTree(class *inTreeClass, file bool, source *csi.VolumeContentSource) error {
	switch {
	case class == nil:
		return nil
	case file:
		return status.Error(codes.InvalidArgument,
			"a StorageClass of the in-tree plugin (kubernetes.io/vsphere-volume) makes VMDKs, which attach to one node at a time: use a StorageClass of "+Name+" for ReadWriteMany")
	case source != nil:
		return status.Error(codes.InvalidArgument,
			"a StorageClass of the in-tree plugin (kubernetes.io/vsphere-volume) can't restore a snapshot or clone a volume: use a StorageClass of "+Name)
	}
	return nil
}
