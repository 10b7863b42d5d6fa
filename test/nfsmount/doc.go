// Package nfsmount is a test-only stand-in for the kernel's NFS client,
// for machines whose kernel has none (but has FUSE).
//
// Its command, cmd/mount.nfs, installed as /sbin/mount.nfs4 and
// /sbin/mount.nfs, is what mount(8) runs for `mount -t nfs4 SERVER:/path
// DIR`: it mounts the share with FUSE, speaking NFSv3 to the server
// (github.com/willscott/go-nfs-client's XDR and types, no portmapper: the
// NFS and MOUNT programs are both on port 2049 or port=N), and serves it
// from a daemon that ends when the share is unmounted. EnsureInstalled and
// Uninstall install it for tests; README.md tells the rest.
package nfsmount
