package vcenter

import "testing"

// TestParseDiskPath: the in-tree plugin's paths, in the spellings PVs
// hold, read as one normal form; anything else is no disk path.
func TestParseDiskPath(t *testing.T) {
	for in, want := range map[string]string{
		"[vsanDatastore] kubevols/kubernetes-dynamic-pvc-1.vmdk":        "[vsanDatastore] kubevols/kubernetes-dynamic-pvc-1.vmdk",
		"  [ds1]   kubevols/x.vmdk ":                                    "[ds1] kubevols/x.vmdk",
		"[DatastoreCluster/ds1] kubevols/x.vmdk":                        "[ds1] kubevols/x.vmdk",
		"[ds with spaces] volumes/disk.VMDK":                            "[ds with spaces] volumes/disk.VMDK",
		"[ds]/kubevols/x.vmdk":                                          "[ds] kubevols/x.vmdk",
		"[vsanDatastore] 5e7a1b2c-aaaa-bbbb-cccc-000000000000/x_1.vmdk": "[vsanDatastore] 5e7a1b2c-aaaa-bbbb-cccc-000000000000/x_1.vmdk",
	} {
		p, ok := ParseDiskPath(in)
		if !ok || p.String() != want {
			t.Errorf("ParseDiskPath(%q) = %q, %v; want %q", in, p, ok, want)
		}
	}
	for _, in := range []string{
		"", "6c6a1f2e-1234-4b6f-9d2e-0123456789ab", "file:abc", "[] kubevols/x.vmdk", "[ds] kubevols/x.txt",
		"[ds] .vmdk", "[ds kubevols/x.vmdk", "[ds] kubevols/../etc/x.vmdk", "[ds] kubevols//x.vmdk",
	} {
		if p, ok := ParseDiskPath(in); ok {
			t.Errorf("ParseDiskPath(%q) = %q; want no disk path", in, p)
		}
	}
}

// TestInTreeVolumeName: one name per disk, whatever the spelling of its
// path; other disks, other names; a name CNS takes.
func TestInTreeVolumeName(t *testing.T) {
	a, _ := ParseDiskPath("[ds1] kubevols/x.vmdk")
	b, _ := ParseDiskPath(" [DatastoreCluster/ds1]  kubevols/x.vmdk")
	c, _ := ParseDiskPath("[ds2] kubevols/x.vmdk")
	if InTreeVolumeName(a) != InTreeVolumeName(b) {
		t.Errorf("two spellings of one path: %s, %s", InTreeVolumeName(a), InTreeVolumeName(b))
	}
	if InTreeVolumeName(a) == InTreeVolumeName(c) {
		t.Errorf("two disks, one name %s", InTreeVolumeName(a))
	}
	if n := InTreeVolumeName(a); len(n) != len("intree-")+32 {
		t.Errorf("name %q: want intree- and 32 hex digits", n)
	}
}
