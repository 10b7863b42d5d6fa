package node

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDiskUUID: a disk UUID from a publish context (as the controller got
// it from vCenter, or as anyone wrote it) never names a link outside the
// by-id directory, and a good one is 32 lowercase hex digits.
func FuzzDiskUUID(f *testing.F) {
	f.Add("6000C29d-1f3b-4f0a-8e2c-0123456789ab")
	f.Add("6000c29d1f3b4f0a8e2c0123456789ab")
	f.Add("../../../../etc/passwd")
	f.Add("6000C29D 1F3B 4F0A 8E2C 0123456789AB")
	f.Add("")
	f.Fuzz(func(t *testing.T, uuid string) {
		n, err := NormalizeDiskUUID(uuid)
		if err != nil {
			return
		}
		if len(n) != 32 || strings.Trim(n, "0123456789abcdef") != "" {
			t.Fatalf("%q normalized to %q", uuid, n)
		}
		if link := DeviceLink("/dev/disk/by-id", n); filepath.Dir(link) != "/dev/disk/by-id" {
			t.Fatalf("%q names %s, outside the by-id directory", uuid, link)
		}
	})
}
