package driver

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

func inventory() []vcenter.Datastore {
	return []vcenter.Datastore{
		{ID: "ds-1", Name: "vsan", URL: "ds:///vmfs/volumes/vsan/", CapacityBytes: 2048 * gib, FreeBytes: 1000 * gib, Reachable: true, Compatible: true},
		{ID: "ds-2", Name: "nfs-gold", URL: "ds:///vmfs/volumes/nfs/", CapacityBytes: 500 * gib, FreeBytes: 400 * gib, Reachable: true, Compatible: true},
		{ID: "ds-3", Name: "silver", URL: "ds:///vmfs/volumes/silver/", CapacityBytes: 1024 * gib, FreeBytes: 1024 * gib, Reachable: true, Incompatible: "no Gold capability"},
		{ID: "ds-4", Name: "local", URL: "ds:///vmfs/volumes/local/", CapacityBytes: 100 * gib, FreeBytes: 100 * gib, Compatible: true, Unreachable: []string{"node-2", "node-3"}},
	}
}

func TestPlaceChoosesMostFreeCompatible(t *testing.T) {
	t.Parallel()
	pl, err := place(inventory(), "Gold", "", 5*gib)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ds := range pl.Candidates {
		names = append(names, ds.Name)
	}
	if got := strings.Join(names, ","); got != "vsan,nfs-gold" {
		t.Fatalf("candidates %s, want vsan,nfs-gold (compatible, reachable, most free first)", got)
	}
	if !strings.Contains(pl.Why, "vsan") {
		t.Errorf("why %q does not name the choice", pl.Why)
	}
}

func TestPlaceErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, policy, url string
		size              int64
		code              codes.Code
		message           string
	}{
		{"too big for any", "Gold", "", 3000 * gib, codes.OutOfRange, "larger than any datastore"},
		{"no room", "Gold", "", 1500 * gib, codes.ResourceExhausted, `storage policy "Gold"`},
		{"url incompatible", "Gold", "ds:///vmfs/volumes/silver", gib, codes.InvalidArgument, "not compatible with storage policy"},
		{"url unreachable", "Gold", "ds:///vmfs/volumes/local/", gib, codes.InvalidArgument, "node-2, node-3"},
		{"url unknown", "Gold", "ds:///nope/", gib, codes.InvalidArgument, "known: ds:///"},
		{"url full", "", "ds:///vmfs/volumes/nfs/", 450 * gib, codes.ResourceExhausted, "400 GiB free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := place(inventory(), tc.policy, tc.url, tc.size)
			if status.Code(toStatus(err)) != tc.code || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v, want %s containing %q", err, tc.code, tc.message)
			}
		})
	}
}

func TestPlaceNoCompatibleDatastore(t *testing.T) {
	t.Parallel()
	all := inventory()
	for i := range all {
		all[i].Compatible = false
		all[i].Incompatible = "lacks the capability"
	}
	_, err := place(all, "Platinum", "", gib)
	if status.Code(toStatus(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), "Platinum") {
		t.Fatalf("err = %v", err)
	}
}
