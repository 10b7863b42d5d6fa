package sim

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"

	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
)

// mountAs mounts a share over NFS with the AUTH_UNIX credential uid:gid.
func mountAs(t *testing.T, s *Sim, share string, uid, gid uint32) *nfsc.Target {
	t.Helper()
	c, err := rpc.DialTCP("tcp", net.JoinHostPort(s.NFSAddress(), "2049"), false)
	if err != nil {
		t.Fatal(err)
	}
	m := &nfsc.Mount{Client: c}
	v, err := m.Mount("/vsanfs/"+share, rpc.NewAuthUnix("test-client", uid, gid).Auth())
	if err != nil {
		t.Fatalf("mount %s as %d:%d: %v", share, uid, gid, err)
	}
	t.Cleanup(func() { v.Close(); c.Close() })
	return v
}

// ownerOf is a file's uid and gid in the share's directory.
func ownerOf(t *testing.T, dir, name string) (uint32, uint32) {
	t.Helper()
	info, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestNFSCallerAndRootSquash: the embedded vSAN File Service acts for each
// NFS call's caller, as an NFS server does: what a user creates is theirs,
// a user writes only where the modes let them, only root chowns; with root
// squash (allowRoot false) root is nobody (65534): it can't chown or
// change a file's group (kubelet's fsGroup walk) and creates files as
// nobody, where others may write.
func TestNFSCallerAndRootSquash(t *testing.T) {
	skipShort(t, "serves NFS on port 2049 and mounts a share")
	s := startSim(t, Options{})
	if s.NFSAddress() == "" {
		t.Skip("serving NFS on port 2049 needs root")
	}
	c := connect(t, s)
	mustCreate(t, c, fileSpec("pvc-squash", 64, "", everyoneRW))
	dir := s.Shares()[0].Dir
	root := mountAs(t, s, "pvc-squash", 0, 0)
	user := mountAs(t, s, "pvc-squash", 1000, 1000)

	// Root, not squashed: prepares a directory for the user and one for all.
	if _, err := root.Mkdir("app", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := root.Setattr("app", nfsc.Sattr3{UID: nfsc.SetUID{SetIt: true, UID: 1000}, GID: nfsc.SetUID{SetIt: true, UID: 1000}}); err != nil {
		t.Fatalf("root chowns app: %v", err)
	}
	if _, err := root.Mkdir("tmp", 0o777); err != nil {
		t.Fatal(err)
	}
	if err := root.Setattr("tmp", nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: 0o777}}); err != nil {
		t.Fatal(err)
	}
	if uid, gid := ownerOf(t, dir, "tmp"); uid != 0 || gid != 0 {
		t.Errorf("tmp made by root is %d:%d", uid, gid)
	}

	// The user: their files are theirs; the share's root (0755, root's) is not theirs to write.
	if _, err := user.Create("app/mine", 0o644); err != nil {
		t.Fatalf("user creates in their directory: %v", err)
	}
	if uid, gid := ownerOf(t, dir, "app/mine"); uid != 1000 || gid != 1000 {
		t.Errorf("app/mine made by 1000:1000 is %d:%d", uid, gid)
	}
	if _, err := user.Create("top", 0o644); err == nil {
		t.Error("user 1000 created a file in the share's root (0755, root's)")
	}
	if err := user.Setattr("app/mine", nfsc.Sattr3{UID: nfsc.SetUID{SetIt: true, UID: 0}}); err == nil {
		t.Error("user 1000 gave a file to root")
	}

	// Root squash on, mounts kept: the next call is squashed.
	if err := s.SetSharePermissions("pvc-squash", []vsanfstypes.VsanFileShareNetPermission{
		{Ips: "*", Permissions: vsanfstypes.VsanFileShareAccessTypeREAD_WRITE, AllowRoot: false},
	}); err != nil {
		t.Fatal(err)
	}
	if err := root.Setattr("app/mine", nfsc.Sattr3{GID: nfsc.SetUID{SetIt: true, UID: 2000}}); err == nil {
		t.Error("squashed root changed the group of another's file (kubelet's fsGroup walk)")
	}
	if _, gid := ownerOf(t, dir, "app/mine"); gid != 1000 {
		t.Errorf("app/mine's group is %d, want 1000", gid)
	}
	if _, err := root.Create("app/byroot", 0o644); err == nil {
		t.Error("squashed root created a file in user 1000's directory")
	}
	if _, err := root.Create("tmp/byroot", 0o644); err != nil {
		t.Fatalf("squashed root creates where others may write: %v", err)
	}
	if uid, gid := ownerOf(t, dir, "tmp/byroot"); uid != nfsAnonID || gid != nfsAnonID {
		t.Errorf("tmp/byroot made by squashed root is %d:%d, want nobody (%d)", uid, gid, nfsAnonID)
	}
	if _, err := user.Create("app/still-mine", 0o644); err != nil {
		t.Errorf("user 1000 on the root-squashed share: %v", err)
	}
}

// TestParseCred reads AUTH_UNIX credentials from calls, and makes anything
// else anonymous.
func TestParseCred(t *testing.T) {
	call := func(flavor uint32, body []byte) []byte {
		var b []byte
		for _, v := range []uint32{7, 0, 2, 100003, 3, 1, flavor, uint32(len(body))} { //nolint:gosec // small
			b = append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return append(b, body...)
	}
	unix := rpc.NewAuthUnix("node-1", 1000, 2000).Auth()
	if got := parseCred(call(unix.Flavor, unix.Body)); !got.unix || got.uid != 1000 || got.gid != 2000 {
		t.Errorf("AUTH_UNIX 1000:2000 read as %+v", got)
	}
	if got := parseCred(call(0, nil)); got.unix {
		t.Errorf("AUTH_NULL read as %+v", got)
	}
	if got := parseCred(call(1, []byte{0, 0})); got.unix {
		t.Errorf("a short AUTH_UNIX body read as %+v", got)
	}
	squashed := effective(rpcCred{unix: true, uid: 0, gid: 0, gids: []uint32{0, 5}}, false)
	if squashed.uid != nfsAnonID || squashed.gid != nfsAnonID || squashed.inGroup(0) || !squashed.inGroup(5) {
		t.Errorf("root squashed to %+v", squashed)
	}
	if kept := effective(rpcCred{unix: true}, true); !kept.root() {
		t.Errorf("root allowed became %+v", kept)
	}
}
