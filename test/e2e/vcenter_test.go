package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/pbm"
	"github.com/vmware/govmomi/vim25"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
)

// vcenter is a client of the embedded vCenter (bin/vsphere-sim) that the
// driver's controller uses, read from the csi-vsphere.conf it wrote.
type vcenter struct {
	vim *vim25.Client
	cns *cns.Client
	pbm *pbm.Client
}

func connectVCenter(t *testing.T) *vcenter {
	t.Helper()
	cfg, err := config.Load(env.cluster.VCenter.Config)
	if err != nil {
		t.Fatalf("the embedded vCenter's config: %v", err)
	}
	vc := cfg.VirtualCenter
	u := &url.URL{Scheme: "https", Host: vc.Host + ":" + strconv.Itoa(vc.Port), Path: "/sdk",
		User: url.UserPassword(vc.User, vc.Password.Reveal())}
	// Loopback, the simulator's self-signed certificate: the driver checks
	// the thumbprint; the test only reads.
	c, err := govmomi.NewClient(t.Context(), u, true)
	if err != nil {
		t.Fatalf("connecting to the embedded vCenter at %s: %v", u.Host, err)
	}
	t.Cleanup(func() { _ = c.Logout(context.Background()) })
	cc, err := cns.NewClient(t.Context(), c.Client)
	if err != nil {
		t.Fatalf("CNS client: %v", err)
	}
	pc, err := pbm.NewClient(t.Context(), c.Client)
	if err != nil {
		t.Fatalf("SPBM client: %v", err)
	}
	return &vcenter{vim: c.Client, cns: cc, pbm: pc}
}

// policyID is the ID of the storage policy with this name.
func (v *vcenter) policyID(t *testing.T, name string) string {
	t.Helper()
	id, err := v.pbm.ProfileIDByName(t.Context(), name)
	if err != nil {
		t.Fatalf("ID of storage policy %q: %v", name, err)
	}
	return id
}

// volume queries CNS for a volume by ID; nil when CNS does not know it.
func (v *vcenter) volume(ctx context.Context, id string) (*cnstypes.CnsVolume, error) {
	res, err := v.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: id}}})
	if err != nil {
		return nil, err
	}
	for i := range res.Volumes {
		if res.Volumes[i].VolumeId.Id == id {
			return &res.Volumes[i], nil
		}
	}
	return nil, nil
}

// snapshotIDs lists the IDs of the CNS snapshots of a volume.
func (v *vcenter) snapshotIDs(ctx context.Context, volumeID string) ([]string, error) {
	task, err := v.cns.QuerySnapshots(ctx, cnstypes.CnsSnapshotQueryFilter{
		SnapshotQuerySpecs: []cnstypes.CnsSnapshotQuerySpec{{VolumeId: cnstypes.CnsVolumeId{Id: volumeID}}},
	})
	if err != nil {
		return nil, err
	}
	info, err := cns.GetTaskInfo(ctx, task)
	if err != nil {
		return nil, err
	}
	res, err := cns.GetQuerySnapshotsTaskResult(ctx, info)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range res.Entries {
		if e.Error != nil {
			return nil, fmt.Errorf("snapshot query of %s: %s", volumeID, e.Error.LocalizedMessage)
		}
		ids = append(ids, e.Snapshot.SnapshotId.Id)
	}
	return ids, nil
}

// pvcNames are the PVC names in a CNS volume's Kubernetes metadata.
func pvcNames(v *cnstypes.CnsVolume) []string {
	var names []string
	for _, e := range v.Metadata.EntityMetadata {
		if k, ok := e.(*cnstypes.CnsKubernetesEntityMetadata); ok && k.EntityType == string(cnstypes.CnsKubernetesEntityTypePVC) {
			names = append(names, k.Namespace+"/"+k.EntityName)
		}
	}
	return names
}

// datastoresByPolicy reads the embedded vCenter's summary (its log):
// datastore URL -> name and the policies it satisfies.
type simDatastore struct {
	name     string
	policies []string
}

func simDatastores(t *testing.T) map[string]simDatastore {
	t.Helper()
	f, err := os.Open(logOf(t, "vsphere-sim"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]simDatastore{}
	var last *simDatastore
	inDatastores := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "datastores:":
			inDatastores = true
		case inDatastores && !strings.HasPrefix(line, "  "):
			inDatastores = false
		case inDatastores && strings.Contains(line, "policies=["):
			fields := strings.Fields(line)
			pol := line[strings.Index(line, "policies=[")+len("policies=[") : strings.LastIndex(line, "]")]
			d := simDatastore{name: fields[0]}
			for _, p := range strings.Split(pol, ",") {
				if p = strings.TrimSpace(p); p != "" {
					d.policies = append(d.policies, p)
				}
			}
			last = &d
		case inDatastores && last != nil && strings.Contains(line, "url="):
			out[strings.TrimSpace(line[strings.Index(line, "url=")+4:])] = *last
			last = nil
		}
	}
	if len(out) == 0 {
		t.Fatalf("no datastores found in the embedded vCenter's summary (%s)", f.Name())
	}
	return out
}

// dataFiles lists the embedded vCenter's data files of a volume
// (<datastore dir>/fcd/<id>-flat.vmdk).
func dataFiles(t *testing.T, id string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(env.cluster.VCenter.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), id) && strings.HasSuffix(d.Name(), ".vmdk") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("looking for the data file of %s: %v", id, err)
	}
	return files
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
