// Command mount.nfs is a test-only stand-in for the kernel's NFS client:
// installed as /sbin/mount.nfs4 and /sbin/mount.nfs, it mounts an NFSv3
// share through FUSE when mount(8) is asked for an NFS mount on a machine
// whose kernel has no NFS. See ../../README.md.
package main

import (
	"os"

	"github.com/vsphere-cns/vsphere-csi/test/nfsmount"
)

func main() { os.Exit(nfsmount.Main(os.Args)) }
