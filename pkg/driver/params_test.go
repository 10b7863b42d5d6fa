package driver

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseVolumeParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      map[string]string
		want    volumeParams
		code    codes.Code
		message string
	}{
		{name: "empty", in: nil},
		{name: "policy, any case", in: map[string]string{"StoragePolicyName": "Gold"}, want: volumeParams{PolicyName: "Gold"}},
		{name: "all", in: map[string]string{
			"storagepolicyname": "Gold", "datastoreURL": "ds:///vmfs/volumes/a/", "fsType": "XFS",
			paramPVCName: "data", paramPVCNamespace: "ns", paramPVName: "pv-1",
		}, want: volumeParams{PolicyName: "Gold", DatastoreURL: "ds:///vmfs/volumes/a/", FSType: "xfs",
			PVCName: "data", PVCNamespace: "ns", PVName: "pv-1"}},
		{name: "unknown key names the accepted ones", in: map[string]string{"diskformat": "thin"},
			code: codes.InvalidArgument, message: "storagepolicyname, datastoreurl, fstype"},
		{name: "bad fstype", in: map[string]string{"fstype": "ntfs"}, code: codes.InvalidArgument, message: "ext4, xfs or ext3"},
		{name: "one key spelled twice", in: map[string]string{"storagePolicyName": "Gold", "storagepolicyname": "Silver"},
			code: codes.InvalidArgument, message: `"storagePolicyName" and "storagepolicyname" are the same parameter`},
		{name: "fstype and its prefixed form", in: map[string]string{"fstype": "xfs", "csi.storage.k8s.io/fstype": "ext4"},
			code: codes.InvalidArgument, message: "are the same parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVolumeParams(tc.in)
			if tc.code != codes.OK {
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.message) {
					t.Fatalf("err = %v, want %s containing %q", err, tc.code, tc.message)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCapacityBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		req, limit int64
		nilRange   bool
		want       int64
		code       codes.Code
	}{
		{name: "unset is 1 GiB", nilRange: true, want: gib},
		{name: "zero is 1 GiB", want: gib},
		{name: "rounded up to a MiB", req: 5*gib + 1, want: 5*gib + mib},
		{name: "exact", req: 5 * gib, want: 5 * gib},
		{name: "limit only, below default", limit: 100 * mib, want: 100 * mib},
		{name: "rounding would pass limit", req: 10*mib + 1, limit: 10*mib + 100, code: codes.OutOfRange},
		{name: "rounded down within limit", req: 10 * mib, limit: 10*mib + 100, want: 10 * mib},
		{name: "required above limit", req: 2 * gib, limit: gib, code: codes.OutOfRange},
		{name: "negative", req: -1, code: codes.OutOfRange},
		// Issue 11, finding 9: near MaxInt64 the rounding overflowed into a
		// negative size (InvalidArgument).
		{name: "near MaxInt64", req: math.MaxInt64 - 1, code: codes.OutOfRange},
		{name: "above vSphere's largest disk", req: MaxVolumeBytes + 1, code: codes.OutOfRange},
		{name: "vSphere's largest disk", req: MaxVolumeBytes, want: MaxVolumeBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *csi.CapacityRange
			if !tc.nilRange {
				r = &csi.CapacityRange{RequiredBytes: tc.req, LimitBytes: tc.limit}
			}
			got, err := capacityBytes(r)
			if status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func capability(mode csi.VolumeCapability_AccessMode_Mode, block bool) *csi.VolumeCapability {
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
	if block {
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}
	}
	return c
}

func TestValidateCapabilities(t *testing.T) {
	t.Parallel()
	ok := []csi.VolumeCapability_AccessMode_Mode{
		csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER,
	}
	for _, m := range ok {
		for _, block := range []bool{false, true} {
			if file, err := validateCapabilities([]*csi.VolumeCapability{capability(m, block)}); err != nil || file {
				t.Errorf("%s block=%v: file=%v %v, want a block volume", m, block, file, err)
			}
		}
	}
	multi := []csi.VolumeCapability_AccessMode_Mode{
		csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER,
	}
	for _, m := range multi {
		for _, fs := range []string{"", "ext4", "nfs4", "NFS"} {
			c := capability(m, false)
			c.GetMount().FsType = fs
			if file, err := validateCapabilities([]*csi.VolumeCapability{c}); err != nil || !file {
				t.Errorf("%s fs %q: file=%v %v, want a file volume", m, fs, file, err)
			}
		}
		// Raw block can't be shared: the message names what block volumes take.
		_, err := validateCapabilities([]*csi.VolumeCapability{capability(m, true)})
		if status.Code(err) != codes.InvalidArgument || !containsAll(err.Error(), "raw block", "ReadWriteOnce", "volumeMode: Filesystem") {
			t.Errorf("%s on block: %v", m, err)
		}
		c := capability(m, false)
		c.GetMount().FsType = "xfs"
		if _, err := validateCapabilities([]*csi.VolumeCapability{c}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "nfs4") {
			t.Errorf("%s with xfs: %v", m, err)
		}
	}
	// One kind per volume.
	_, err := validateCapabilities([]*csi.VolumeCapability{capability(multi[2], false), capability(ok[0], false)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "one kind") {
		t.Errorf("RWX with RWO: %v", err)
	}
	nfsRWO := capability(ok[0], false)
	nfsRWO.GetMount().FsType = "nfs4"
	if _, err := validateCapabilities([]*csi.VolumeCapability{nfsRWO}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "file volumes") {
		t.Errorf("nfs4 on ReadWriteOnce: %v", err)
	}
	if _, err := validateCapabilities(nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no capabilities: %v", err)
	}
	if err := validateCapability(&csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no access type: %v", err)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestMinFSBytesIsMkfsMinimum: the minimum fsMinimum applies is the one
// this machine's mkfs.xfs has (the image's Debian release's xfsprogs is the
// machine's): a sparse file of exactly minFSBytes formats, one MiB less
// does not.
func TestMinFSBytesIsMkfsMinimum(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("no mkfs.xfs on this machine (make test installs xfsprogs): the minimum is not checked against it")
	}
	least := minFSBytes["xfs"]
	for _, tc := range []struct {
		size int64
		ok   bool
	}{{least, true}, {least - mib, false}} {
		img := filepath.Join(t.TempDir(), "disk.img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(tc.size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, err := exec.Command(mkfs, "-q", img).CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("mkfs.xfs of %d MiB: %v (%s), want success %v", tc.size/mib, err, strings.TrimSpace(string(out)), tc.ok)
		}
	}
}
