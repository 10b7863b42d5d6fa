package driver

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseSnapshotID(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in        string
		vol, snap string
		ok        bool
	}{
		{"vol-1+snap-1", "vol-1", "snap-1", true},
		{snapshotID("0e4a1f3c-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "9f1c"), "0e4a1f3c-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "9f1c", true},
		{"no-separator", "", "", false},
		{"+snap", "", "", false},
		{"vol+", "", "", false},
		{"", "", "", false},
	} {
		vol, snap, ok := parseSnapshotID(c.in)
		if ok != c.ok || (ok && (vol != c.vol || snap != c.snap)) {
			t.Errorf("parseSnapshotID(%q) = %q, %q, %v; want %q, %q, %v", c.in, vol, snap, ok, c.vol, c.snap, c.ok)
		}
	}
}

func TestSourceSize(t *testing.T) {
	t.Parallel()
	src := &contentSource{volumeID: "v", snapshotID: "s", sizeBytes: 2 * gib}
	for _, c := range []struct {
		name string
		size int64
		r    *csi.CapacityRange
		want int64
		code codes.Code
	}{
		{"larger than the source", 3 * gib, &csi.CapacityRange{RequiredBytes: 3 * gib}, 3 * gib, codes.OK},
		{"nothing asked: the source's size", defaultCapacity, nil, 2 * gib, codes.OK},
		{"explicitly smaller", 1 * gib, &csi.CapacityRange{RequiredBytes: 1 * gib}, 0, codes.OutOfRange},
		{"limit below the source", 1 * gib, &csi.CapacityRange{LimitBytes: 1 * gib}, 0, codes.OutOfRange},
	} {
		got, err := src.sourceSize(c.size, c.r)
		if status.Code(err) != c.code || (err == nil && got != c.want) {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, got, err, c.want, c.code)
		}
	}
	var none *contentSource
	if got, err := none.sourceSize(5, nil); got != 5 || err != nil || none.toCSI() != nil {
		t.Errorf("no source: %d, %v", got, err)
	}
}
