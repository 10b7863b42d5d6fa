package vcenter

import (
	"regexp"
	"strings"
	"testing"

	cnstypes "github.com/vmware/govmomi/cns/types"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

// TestFileShareTargetsAndDistribution: csi-vsphere.conf keys of the
// upstream driver honoured with its meaning: targetvSANFileShareClusters
// and targetvSANFileShareDatastoreURLs keep file shares off the others
// (the reason says which key), cluster-distribution is recorded on the
// volume's container cluster, where the vSphere Client shows it.
func TestFileShareTargetsAndDistribution(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 1})
	ctx := ctxT(t)
	elsewhere := connectEnv(t, s, func(o *Options) { o.FileShareClusters = []string{"another-cluster"} })
	why, err := elsewhere.c.FileShareSupport(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	vsanDS := ""
	for id, w := range why {
		if strings.Contains(w, "is not in targetvSANFileShareClusters") {
			vsanDS = id
		} else if w == "" {
			t.Errorf("datastore %s can hold file shares though its cluster is not listed", id)
		}
	}
	m := regexp.MustCompile(`its vSAN cluster (\S+) is not in`).FindStringSubmatch(why[vsanDS])
	if m == nil {
		t.Fatalf("no vSAN datastore refused for targetvSANFileShareClusters: %v", why)
	}

	listed := connectEnv(t, s, func(o *Options) {
		o.FileShareClusters = []string{m[1]}
		o.ClusterDistribution = "OpenShift"
	})
	why, err = listed.c.FileShareSupport(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if why[vsanDS] != "" {
		t.Errorf("the listed cluster's vSAN datastore: %q, want it to take shares", why[vsanDS])
	}
	byURL := connectEnv(t, s, func(o *Options) { o.FileShareDatastoreURLs = []string{"ds:///vmfs/volumes/none/"} })
	why, err = byURL.c.FileShareSupport(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(why[vsanDS], "not in targetvSANFileShareDatastoreURLs") {
		t.Errorf("vSAN datastore with other URLs listed: %q", why[vsanDS])
	}

	v, err := listed.c.CreateVolume(ctx, CreateSpec{Name: "pvc-distribution", CapacityBytes: 64 << 20, DatastoreIDs: placeable(t, listed.c, "")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := listed.c.query(ctx, cnstypes.CnsQueryFilter{VolumeIds: []cnstypes.CnsVolumeId{{Id: v.ID}}})
	if err != nil || len(res.Volumes) != 1 {
		t.Fatalf("query: %v, %v", res, err)
	}
	if got := res.Volumes[0].Metadata.ContainerCluster.ClusterDistribution; got != "OpenShift" {
		t.Errorf("the volume's cluster distribution: %q, want OpenShift", got)
	}
}
