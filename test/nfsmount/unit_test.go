package nfsmount

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// Tests that need neither root nor FUSE.

func TestParseArgs(t *testing.T) {
	r, err := parseArgs("/sbin/mount.nfs4", []string{"10.0.0.1:/vsanfs/share", "/mnt/x", "-s", "-o",
		"rw,hard,sec=sys,vers=4,minorversion=1,timeo=600,noresvport,port=12049,nosuid,x-systemd.foo,bogus"})
	if err != nil {
		t.Fatal(err)
	}
	if r.prog != "mount.nfs4" || r.fstype != "nfs4" || r.host != "10.0.0.1" || r.path != "/vsanfs/share" || r.dir != "/mnt/x" {
		t.Errorf("parsed %+v", r)
	}
	if r.nfsAddr() != "10.0.0.1:12049" || r.mountAddr() != "10.0.0.1:12049" {
		t.Errorf("addresses %s, %s", r.nfsAddr(), r.mountAddr())
	}
	if r.flags != syscall.MS_NOSUID || !r.sloppy || len(r.warnings) != 0 {
		t.Errorf("flags %#x, sloppy %v, warnings %q", r.flags, r.sloppy, r.warnings)
	}

	// Flags first, -r, the default port, an unknown option warned about,
	// vers=3 under mount.nfs4, mountport.
	r, err = parseArgs("mount.nfs4", []string{"-v", "-r", "-o", "ro", "-o", "vers=3,mountport=635,bogus=1", "[::1]:/e", "rel"})
	if err != nil {
		t.Fatal(err)
	}
	if r.flags&syscall.MS_RDONLY == 0 || !r.verbose || r.fstype != "nfs" || r.nfsAddr() != "[::1]:2049" || r.mountAddr() != "[::1]:635" {
		t.Errorf("parsed %+v", r)
	}
	if !filepath.IsAbs(r.dir) || !slices.Equal(r.warnings, []string{`ignoring unknown option "bogus=1"`}) {
		t.Errorf("dir %q, warnings %q", r.dir, r.warnings)
	}

	// rw after ro; -t; mount.nfs's own name.
	r, err = parseArgs("mount.nfs", []string{"h:/p", "/d", "-oro,rw", "-t", "nfs4"})
	if err != nil || r.flags&syscall.MS_RDONLY != 0 || r.fstype != "nfs4" || r.prog != "mount.nfs" {
		t.Errorf("parsed %+v, %v", r, err)
	}

	for _, bad := range [][]string{
		{"h:/p"},                       // no mount point
		{"h:/p", "/d", "-x"},           // unknown flag
		{"h:/p", "/d", "-o"},           // -o without options
		{"h:p", "/d"},                  // not host:/dir
		{"h:/p", "/d", "-o", "port=x"}, // bad port
	} {
		if _, err := parseArgs("mount.nfs4", bad); err == nil {
			t.Errorf("parseArgs(%q) succeeded", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	for err, want := range map[error]syscall.Errno{
		nfsStatus(2):             syscall.ENOENT,
		nfsStatus(13):            syscall.EACCES,
		nfsStatus(1):             syscall.EPERM,
		nfsStatus(17):            syscall.EEXIST,
		nfsStatus(30):            syscall.EROFS,
		nfsStatus(66):            syscall.ENOTEMPTY,
		nfsStatus(20):            syscall.ENOTDIR,
		nfsStatus(21):            syscall.EISDIR,
		nfsStatus(70):            syscall.ESTALE,
		nfsStatus(10006):         syscall.EIO, // SERVERFAULT
		nfsStatus(12345):         syscall.EIO,
		context.DeadlineExceeded: syscall.EIO,
		errTimeout:               syscall.EIO,
		errors.New("anything"):   syscall.EIO,
		mnt3ErrAcces:             syscall.EACCES,
		mnt3ErrNoEnt:             syscall.ESTALE,
		&rpcError{"garbage"}:     syscall.EIO,
		context.Canceled:         syscall.EINTR,
		os.ErrDeadlineExceeded:   syscall.EIO,
		&os.SyscallError{Err: syscall.ECONNRESET}: syscall.EIO,
	} {
		if got := toErrno(err); got != want {
			t.Errorf("toErrno(%v) = %v, want %v", err, got, want)
		}
	}
	for err, want := range map[error]string{
		mnt3ErrAcces:             "access denied by server while mounting h:/p",
		mnt3ErrPerm:              "access denied by server while mounting h:/p",
		mnt3ErrNoEnt:             "mounting h:/p failed, reason given by server: No such file or directory",
		syscall.ECONNREFUSED:     "Connection refused",
		context.DeadlineExceeded: "Connection timed out",
	} {
		if got := mountMessage("h:/p", err); got != want {
			t.Errorf("mountMessage(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestInstallRules(t *testing.T) {
	sbin, run, src := t.TempDir(), t.TempDir(), t.TempDir()
	helper := filepath.Join(src, "helper")
	if err := os.WriteFile(helper, []byte("binary "+magic+" binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	kernelNFS := false
	in := installer{sbin: sbin, run: run, hasNFS: func() bool { return kernelNFS }}
	installed := func() bool {
		return isHelper(filepath.Join(sbin, "mount.nfs4")) && isHelper(filepath.Join(sbin, "mount.nfs"))
	}

	kernelNFS = true
	if ok, why, err := in.install(helper, "", byTest); ok || err != nil || why == "" || exists(filepath.Join(sbin, "mount.nfs4")) {
		t.Fatalf("with kernel NFS: installed %v (%s), %v", ok, why, err)
	}
	kernelNFS = false

	// A real mount.nfs is never replaced nor removed.
	real := filepath.Join(sbin, "mount.nfs")
	if err := os.WriteFile(real, []byte("real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, why, err := in.install(helper, "", byTest); ok || err != nil || exists(filepath.Join(sbin, "mount.nfs4")) {
		t.Fatalf("with a real mount.nfs: installed %v (%s), %v", ok, why, err)
	}
	if _, err := in.remove(true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "real" {
		t.Fatalf("real mount.nfs touched: %q", b)
	}
	_ = os.Remove(real)

	// Installed for tests: the last holder out removes it.
	if ok, _, err := in.install(helper, "", byTest); !ok || err != nil || !installed() || !exists(filepath.Join(sbin, markerName)) {
		t.Fatalf("install: %v, %v", ok, err)
	}
	// Another (live) holder: the parent process, say.
	if err := os.WriteFile(filepath.Join(in.holders(), "1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := in.uninstall(false); err != nil || !installed() {
		t.Fatalf("uninstall with another holder: %v, installed %v", err, installed())
	}
	_ = os.Remove(filepath.Join(in.holders(), "1"))
	if err := os.WriteFile(filepath.Join(in.holders(), "999999999"), nil, 0o644); err != nil { // dead
		t.Fatal(err)
	}
	if err := in.uninstall(false); err != nil || exists(filepath.Join(sbin, "mount.nfs4")) || exists(filepath.Join(sbin, "mount.nfs")) || exists(filepath.Join(sbin, markerName)) {
		t.Fatalf("uninstall by the last holder: %v, left %v", err, installed())
	}

	// Installed by hand (--install): tests use it and leave it.
	if ok, _, err := in.install(helper, "", byCLI); !ok || err != nil {
		t.Fatalf("install --install: %v, %v", ok, err)
	}
	if ok, _, err := in.install(helper, "", byTest); !ok || err != nil || in.installedBy() != byCLI {
		t.Fatalf("install over --install: %v, %v, by %q", ok, err, in.installedBy())
	}
	if err := in.uninstall(false); err != nil || !installed() {
		t.Fatalf("test uninstall of an --install: %v, installed %v", err, installed())
	}
	if removed, err := in.remove(true); err != nil || len(removed) != 3 || installed() {
		t.Fatalf("--uninstall: removed %v, %v", removed, err)
	}
}
