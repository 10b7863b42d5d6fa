package driver

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Fuzz targets (issue 11): what comes from outside the driver (StorageClass
// parameters, volume and snapshot IDs) never panics it and is refused with
// InvalidArgument when it is wrong. make test runs the seeds; make fuzz
// explores.

func FuzzVolumeParams(f *testing.F) {
	f.Add("storagepolicyname", "Gold", "csi.storage.k8s.io/fstype", "ext4")
	f.Add("datastoreurl", "ds:///vmfs/volumes/x/", "fstype", "XFS")
	f.Add("StoragePolicyName", "", "unknown", "1")
	f.Add("csi.storage.k8s.io/pvc/name", "pvc-1", "csi.storage.k8s.io/pvc/namespace", "default")
	f.Add("fstype", "ext3", "storagepolicyname", "Gold\x00")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		p, err := parseVolumeParams(map[string]string{k1: v1, k2: v2})
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("parameters %q=%q %q=%q: %v, want InvalidArgument", k1, v1, k2, v2, err)
			}
			return
		}
		for k, v := range map[string]string{k1: v1, k2: v2} {
			if strings.EqualFold(k, paramStoragePolicyName) && p.PolicyName != v && !strings.EqualFold(k1, k2) {
				t.Fatalf("storagepolicyname %q became %q", v, p.PolicyName)
			}
		}
	})
}

func FuzzSnapshotID(f *testing.F) {
	f.Add("1b2c3d4e-0000-4000-8000-123456789abc+9f8e7d6c-0000-4000-8000-abcdefabcdef")
	f.Add("+")
	f.Add("vol+")
	f.Add("+snap")
	f.Add("a+b+c")
	f.Fuzz(func(t *testing.T, id string) {
		vol, snap, ok := parseSnapshotID(id)
		if !ok {
			return
		}
		if vol == "" || snap == "" || strings.Contains(vol, snapshotIDSep) {
			t.Fatalf("%q parsed as volume %q snapshot %q", id, vol, snap)
		}
		if snapshotID(vol, snap) != id {
			t.Fatalf("%q parsed as %q + %q, which joins to %q", id, vol, snap, snapshotID(vol, snap))
		}
	})
}
