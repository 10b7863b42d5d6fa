package driver

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestInTreeParams: the parameters csi-translation-lib makes from an
// in-tree StorageClass (plugins/vsphere_volume.go,
// TranslateInTreeStorageClassToCSI) are taken out before the driver's own
// are read; each one the driver can't honour is refused by name.
func TestInTreeParams(t *testing.T) {
	class, rest, err := inTreeParams(map[string]string{
		"csimigration": "true", "datastore-migrationparam": "ds1", "DiskFormat-MigrationParam": "EagerZeroedThick",
		"storagepolicyname": "Gold", "csi.storage.k8s.io/fstype": "xfs",
	})
	if err != nil {
		t.Fatal(err)
	}
	if class == nil || class.datastore != "ds1" || class.diskFormat != "eagerzeroedthick" {
		t.Errorf("class %+v; want datastore ds1, eagerzeroedthick", class)
	}
	if len(rest) != 2 || rest["storagepolicyname"] != "Gold" || rest["csi.storage.k8s.io/fstype"] != "xfs" {
		t.Errorf("rest %v; want the driver's own two", rest)
	}
	if class, _, _ := inTreeParams(map[string]string{"csimigration": "true"}); class == nil || class.diskFormat != "thin" {
		t.Errorf("no diskformat: %+v; want thin, the in-tree plugin's default", class)
	}
	if class, rest, err := inTreeParams(map[string]string{"storagepolicyname": "Gold"}); class != nil || len(rest) != 1 || err != nil {
		t.Errorf("a class of the driver: %+v, %v, %v; want no in-tree class", class, rest, err)
	}
	for _, k := range []string{"hostfailurestotolerate", "forceprovisioning", "cachereservation", "diskstripes", "objectspacereservation", "iopslimit"} {
		_, _, err := inTreeParams(map[string]string{"csimigration": "true", k + "-migrationparam": "1"})
		if status.Code(err) != codes.InvalidArgument || !containsAll(status.Convert(err).Message(), k+"=\"1\"") {
			t.Errorf("%s: %v; want InvalidArgument naming it", k, err)
		}
	}
	for _, in := range []map[string]string{
		{"csimigration": "true", "diskformat-migrationparam": "sparse"},
		{"csimigration": "true", "zone-migrationparam": "a"},
		{"csimigration": "maybe"},
		{"datastore-migrationparam": "ds1"},
	} {
		if _, _, err := inTreeParams(in); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v; want InvalidArgument", in, err)
		}
	}
}
