package node

import (
	"slices"
	"strings"
	"testing"

	mount "k8s.io/mount-utils"
)

// FuzzNFSMountOptions: the mount(8) command line of a file volume's NFS
// mount, from an export (as a publish context names it), the filesystem
// type, read-only and the capability's mount flags. Whatever they hold:
// the export and the target are the command's two operands, never read
// as options; a read-only mount is read-only whatever the flags say; each
// of NFSv4.1's defaults is there unless a flag (alone or in a
// comma-separated list, as mount(8) reads it) sets the same option, and
// then only the flag's value is.
func FuzzNFSMountOptions(f *testing.F) {
	f.Add("10.0.0.1:/vsanfs/pvc-1", true, false, "")
	f.Add("10.0.0.1:/vsanfs/pvc-1", true, true, "rw")
	f.Add("10.0.0.1:/vsanfs/pvc-1", false, false, "vers=3\nnolock")
	f.Add("-oremount,rw:/x", true, false, "")
	f.Add("[fd00::1]:/vsanfs/pvc-2", true, false, "nolock,vers=3")
	f.Add("server:/x", true, true, "noatime,rw\n\nro")
	f.Add("server:/x", true, false, "nfsvers=4.2\nsec=krb5")
	f.Fuzz(func(t *testing.T, source string, nfs4, readOnly bool, flags string) {
		fsType := FSTypeNFS
		if nfs4 {
			fsType = FSTypeNFS4
		}
		var mountFlags []string
		if flags != "" {
			mountFlags = strings.Split(flags, "\n")
		}
		if err := CheckNFSExport(source); err != nil {
			return // refused: never mounted
		}
		const target = "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pv/mount"
		opts := nfsMountOptions(fsType, readOnly, mountFlags)
		args := mount.MakeMountArgs(source, target, fsType, opts)

		// The command line as mount(8) reads it.
		var operands, options []string
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case (a == "-t" || a == "-o") && i+1 < len(args):
				if a == "-o" {
					options = append(options, strings.Split(args[i+1], ",")...)
				}
				i++
			case strings.HasPrefix(a, "-"):
				t.Fatalf("export %q, flags %q: mount %q reads %q as an option", source, mountFlags, args, a)
			default:
				operands = append(operands, a)
			}
		}
		if !slices.Equal(operands, []string{source, target}) {
			t.Fatalf("export %q: mount %q mounts %q, want %q at %s", source, args, operands, source, target)
		}
		if slices.Contains(options, "") {
			t.Fatalf("flags %q: empty option in %q", mountFlags, options)
		}

		// What the flags ask, one option at a time.
		var asked []string
		for _, f := range mountFlags {
			for _, o := range strings.Split(f, ",") {
				if o != "" {
					asked = append(asked, o)
				}
			}
		}
		if readOnly || slices.Contains(asked, "ro") {
			last := ""
			for _, o := range options {
				if o == "ro" || o == "rw" {
					last = o
				}
			}
			if last != "ro" {
				t.Fatalf("read-only %t, flags %q: options %q mount read-write", readOnly, mountFlags, options)
			}
		}
		for _, o := range asked {
			if o != "ro" && o != "rw" && !slices.Contains(options, o) {
				t.Fatalf("flags %q: option %q is not in %q", mountFlags, o, options)
			}
		}
		if !nfs4 {
			return
		}
		setBy := func(key string, opts []string) bool {
			return slices.ContainsFunc(opts, func(o string) bool {
				k, _, _ := strings.Cut(o, "=")
				return k == key || (key == "vers" && k == "nfsvers") || (key == "minorversion" && (k == "vers" || k == "nfsvers"))
			})
		}
		for _, d := range NFSv41Options {
			key, _, _ := strings.Cut(d, "=")
			switch {
			case setBy(key, asked) && slices.Contains(options, d) && !slices.Contains(asked, d):
				t.Fatalf("flags %q set %s, yet the default %s is in %q too", mountFlags, key, d, options)
			case !setBy(key, asked) && !slices.Contains(options, d):
				t.Fatalf("flags %q: the default %s is missing from %q", mountFlags, d, options)
			}
		}
	})
}
