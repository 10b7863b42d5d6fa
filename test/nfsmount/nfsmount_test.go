package nfsmount

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The mount tests run the helper as the driver's node plugin does: the
// real `mount -t nfs4 -o hard,sec=sys,vers=4,minorversion=1,port=N
// 127.0.0.1:/export DIR` when the helper could be installed in /sbin
// (EnsureInstalled), else the built helper directly with the same
// arguments mount(8) would give it (on a machine with NFS of its own).

var (
	helperBin string // the helper, built by TestMain ("" without root or FUSE)
	viaMount  bool   // the helper is /sbin/mount.nfs4: run mount(8)
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if os.Geteuid() != 0 || !exists("/dev/fuse") {
			return m.Run() // the mount tests skip themselves
		}
		dir, err := os.MkdirTemp("", "nfsmount-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		installed, err := EnsureInstalled(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "EnsureInstalled:", err)
			return 1
		}
		if installed {
			defer func() {
				if err := Uninstall(); err != nil {
					fmt.Fprintln(os.Stderr, "Uninstall:", err)
				}
			}()
		}
		if helperBin, err = Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		viaMount = installed
		if testing.Verbose() {
			fmt.Printf("helper %s; through mount(8): %v\n", helperBin, viaMount)
		}
		return m.Run()
	}())
}

func needMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if !exists("/dev/fuse") {
		t.Skip("no /dev/fuse")
	}
}

const driverOpts = "hard,sec=sys,vers=4,minorversion=1"

// mountCmd is the mount command for spec on dir with the given options.
func mountCmd(ctx context.Context, spec, dir, opts string, env ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if viaMount {
		cmd = exec.CommandContext(ctx, "mount", "-t", "nfs4", "-o", opts, spec, dir)
	} else {
		cmd = exec.CommandContext(ctx, helperBin, spec, dir, "-o", opts)
		cmd.Args[0] = "mount.nfs4"
	}
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// tryMount mounts 127.0.0.1:path of srv on a new directory, with the
// driver's options and extra ones, and returns the directory, mount's
// output and error. Whatever happens, the mount and its daemon are gone
// at the end of the test.
func tryMount(t *testing.T, port int, path, extra string, env ...string) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { cleanup(t, dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := fmt.Sprintf("%s,port=%d%s", driverOpts, port, extra)
	out, err := mountCmd(ctx, "127.0.0.1:"+path, dir, opts, env...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mount did not return within 20s (output %q)", out)
	}
	return dir, string(out), err
}

func mountShare(t *testing.T, srv *testServer, extra string, env ...string) string {
	t.Helper()
	dir, out, err := tryMount(t, srv.port, "/export", extra, env...)
	if err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	if out != "" {
		t.Errorf("mount printed %q", out)
	}
	return dir
}

// cleanup unmounts dir (lazily) and kills its daemons.
func cleanup(t *testing.T, dir string) {
	for i := 0; i < 10 && mountEntry(dir) != nil; i++ {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("cleanup: umount -l %s: %v: %s", dir, err, out)
		}
	}
	// Unmounted, a daemon ends by itself (soon: it says UMNT, at most
	// 2s if the server is away); kill it if it does not.
	eventually(5*time.Second, func() bool { return len(daemons(dir)) == 0 })
	for _, pid := range daemons(dir) {
		t.Logf("cleanup: killing daemon %d of %s", pid, dir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mountEntry is dir's line in /proc/mounts, split (nil: not mounted).
func mountEntry(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var last []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == dir {
			last = f
		}
	}
	return last
}

// daemons are the live helper daemons serving dir.
func daemons(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "mount.nfs") || !slices.Contains(args, dir) {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(env, []byte(daemonEnv+"=")) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive: the process exists and is no zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// eventually polls cond for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func umount(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("umount", args...).CombinedOutput(); err != nil {
		t.Fatalf("umount %v: %v: %s", args, err, out)
	}
}

// checkGone waits for dir to be unmounted and its daemons to exit.
func checkGone(t *testing.T, dir string, pids []int) {
	t.Helper()
	if !eventually(10*time.Second, func() bool {
		return mountEntry(dir) == nil && !slices.ContainsFunc(pids, alive)
	}) {
		t.Fatalf("after umount: mount entry %v, daemons %v", mountEntry(dir), daemons(dir))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantErrno(t *testing.T, err error, want syscall.Errno, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

// (a) Two mounts of one export see each other's changes at once.
func TestTwoMountsShareData(t *testing.T) {
	needMounts(t)
	srv := startServer(t)
	a := mountShare(t, srv, "")
	b := mountShare(t, srv, "")

	if e := mountEntry(a); e[0] != "127.0.0.1:/export" || e[2] != "fuse.nfs4" {
		t.Errorf("/proc/mounts: %v, want source 127.0.0.1:/export, type fuse.nfs4", e)
	}
	if e := mountEntry(a); !slices.Contains(strings.Split(e[3], ","), "rw") || !strings.Contains(e[3], "allow_other") {
		t.Errorf("mount options %q, want rw and allow_other", e[3])
	}

	writeFile(t, filepath.Join(a, "f"), "hello")
	if got := readFile(t, filepath.Join(b, "f")); got != "hello" {
		t.Fatalf("read through b: %q", got)
	}
	if got := readFile(t, filepath.Join(srv.dir, "f")); got != "hello" {
		t.Fatalf("on the server: %q", got)
	}

	// An open file reads what the other mount wrote since.
	held, err := os.Open(filepath.Join(b, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Close() }()
	appendTo := func(path, data string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendTo(filepath.Join(a, "f"), " world")
	buf := make([]byte, 64)
	if n, _ := held.ReadAt(buf, 0); string(buf[:n]) != "hello world" {
		t.Errorf("held file after append through a: %q", buf[:n])
	}
	writeFile(t, filepath.Join(b, "f"), "bye") // shorter: truncates
	if got := readFile(t, filepath.Join(a, "f")); got != "bye" {
		t.Errorf("read through a after overwrite through b: %q", got)
	}
	if n, _ := held.ReadAt(buf, 0); string(buf[:n]) != "bye" {
		t.Errorf("held file after overwrite: %q", buf[:n])
	}
	// a last saw "bye"; b appends, then a appends: at the true end.
	appendTo(filepath.Join(b, "f"), "!")
	appendTo(filepath.Join(a, "f"), "?")
	if got := readFile(t, filepath.Join(b, "f")); got != "bye!?" {
		t.Errorf("after appends through both: %q", got)
	}
	if fi, err := os.Stat(filepath.Join(a, "f")); err != nil || fi.Size() != 5 {
		t.Errorf("stat through a: %v, %v", fi, err)
	}

	// A file larger than one READ or WRITE.
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB
	if err := os.WriteFile(filepath.Join(a, "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b, "big")); err != nil || !bytes.Equal(got, big) {
		t.Errorf("big file through b: %d bytes, %v", len(got), err)
	}

	// Directories, renames, removals.
	if err := os.Mkdir(filepath.Join(a, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(b, "d")); err != nil || !fi.IsDir() {
		t.Fatalf("mkdir through a, stat through b: %v, %v", fi, err)
	}
	wantErrno(t, os.Mkdir(filepath.Join(b, "d"), 0o755), syscall.EEXIST, "mkdir existing")
	if err := os.Rename(filepath.Join(b, "f"), filepath.Join(b, "d", "g")); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(a, "f"))
	wantErrno(t, err, syscall.ENOENT, "stat renamed-away file through a")
	if got := readFile(t, filepath.Join(a, "d", "g")); got != "bye!?" {
		t.Errorf("renamed file through a: %q", got)
	}
	names := func(dir string) []string {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range entries {
			n = append(n, e.Name())
		}
		return n
	}
	if got := names(a); !slices.Equal(got, []string{"big", "d"}) {
		t.Errorf("ls a: %v", got)
	}
	if entries, _ := os.ReadDir(b); len(entries) != 2 || !entries[1].IsDir() {
		t.Errorf("ls b: %v", entries)
	}
	// A directory renamed through one mount, its file used through both.
	if err := os.Rename(filepath.Join(a, "d"), filepath.Join(a, "d2")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(a, "d2", "g"), "moved")
	if got := readFile(t, filepath.Join(b, "d2", "g")); got != "moved" {
		t.Errorf("file in renamed dir through b: %q", got)
	}
	wantErrno(t, os.Remove(filepath.Join(b, "d2")), syscall.ENOTEMPTY, "rmdir non-empty")
	if err := os.Remove(filepath.Join(a, "d2", "g")); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(b, "d2", "g"))
	wantErrno(t, err, syscall.ENOENT, "stat removed file through b")
	if err := os.Remove(filepath.Join(b, "d2")); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(a, "d2"))
	wantErrno(t, err, syscall.ENOENT, "stat removed dir through a")
	wantErrno(t, os.Remove(filepath.Join(a, "nothing")), syscall.ENOENT, "remove missing")

	// Attributes: chmod, truncate, utimes.
	p := filepath.Join(a, "big")
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(b, "big"), 10); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(b, "big"))
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != 10 || !fi.ModTime().Equal(mtime) {
		t.Errorf("stat through b after chmod, truncate, utimes: %v %v %v, %v", fi.Mode(), fi.Size(), fi.ModTime(), err)
	}

	// Symlinks.
	if err := os.Symlink("big", filepath.Join(a, "link")); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(b, "link")); err != nil || target != "big" {
		t.Errorf("readlink through b: %q, %v", target, err)
	}
	if got := readFile(t, filepath.Join(b, "link")); got != "0123456789" {
		t.Errorf("read through symlink: %q", got)
	}

	// O_EXCL on an existing name; statfs.
	_, err = os.OpenFile(filepath.Join(b, "big"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	wantErrno(t, err, syscall.EEXIST, "O_EXCL create of an existing file")
	var st syscall.Statfs_t
	if err := syscall.Statfs(a, &st); err != nil || st.Blocks == 0 {
		t.Errorf("statfs: %+v, %v", st, err)
	}
}

// (b) A read-only mount reads, and refuses writes with EROFS.
func TestReadOnlyMount(t *testing.T) {
	needMounts(t)
	srv := startServer(t)
	writeFile(t, filepath.Join(srv.dir, "f"), "data")
	ro := mountShare(t, srv, ",ro")
	if e := mountEntry(ro); !slices.Contains(strings.Split(e[3], ","), "ro") {
		t.Errorf("mount options %q, want ro", e[3])
	}
	if got := readFile(t, filepath.Join(ro, "f")); got != "data" {
		t.Errorf("read: %q", got)
	}
	wantErrno(t, os.WriteFile(filepath.Join(ro, "f"), []byte("x"), 0o644), syscall.EROFS, "write")
	wantErrno(t, os.WriteFile(filepath.Join(ro, "new"), []byte("x"), 0o644), syscall.EROFS, "create")
	wantErrno(t, os.Mkdir(filepath.Join(ro, "d"), 0o755), syscall.EROFS, "mkdir")
	wantErrno(t, os.Remove(filepath.Join(ro, "f")), syscall.EROFS, "unlink")
	if got := readFile(t, filepath.Join(srv.dir, "f")); got != "data" {
		t.Errorf("on the server after all that: %q", got)
	}

	// mount -r is the same (the helper called as mount(8) would).
	dir := t.TempDir()
	t.Cleanup(func() { cleanup(t, dir) })
	cmd := exec.Command(helperBin, "127.0.0.1:/export", dir, "-r", "-o", fmt.Sprintf("port=%d", srv.port))
	cmd.Args[0] = "mount.nfs"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount.nfs -r: %v: %s", err, out)
	}
	if e := mountEntry(dir); e == nil || e[2] != "fuse.nfs" || !slices.Contains(strings.Split(e[3], ","), "ro") {
		t.Errorf("mount.nfs -r: /proc/mounts: %v", e)
	}
	wantErrno(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644), syscall.EROFS, "write (-r)")
}

// (c) A mount the server refuses fails with status 32 and mount.nfs's
// words; so does one with no server.
func TestRefusedMount(t *testing.T) {
	needMounts(t)
	srv := startServer(t)
	closed := func() int { // a port nothing listens on
		s := startServer(t)
		s.gate.stop()
		return s.port
	}()
	for _, tc := range []struct {
		port       int
		path, want string
	}{
		{srv.port, "/nope", "mount.nfs4: mounting 127.0.0.1:/nope failed, reason given by server: No such file or directory"},
		{srv.port, "/denied", "mount.nfs4: access denied by server while mounting 127.0.0.1:/denied"},
		{closed, "/export", "mount.nfs4: Connection refused"},
	} {
		dir, out, err := tryMount(t, tc.port, tc.path, "")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 32 {
			t.Errorf("%s: mount: %v (output %q), want exit status 32", tc.path, err, out)
		}
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("%s: mount said %q, want %q", tc.path, out, tc.want)
		}
		if e := mountEntry(dir); e != nil {
			t.Errorf("%s: mounted all the same: %v", tc.path, e)
		}
		if pids := daemons(dir); len(pids) > 0 {
			t.Errorf("%s: daemons left: %v", tc.path, pids)
		}
	}
}

// (d) umount ends the daemon and leaves nothing in /proc/mounts.
func TestUmountEndsDaemon(t *testing.T) {
	needMounts(t)
	srv := startServer(t)
	dir := mountShare(t, srv, "")
	pids := daemons(dir)
	if len(pids) != 1 {
		t.Fatalf("daemons serving %s: %v, want one", dir, pids)
	}
	writeFile(t, filepath.Join(dir, "f"), "x")
	umount(t, dir)
	checkGone(t, dir, pids)
}

// (e) A server that stops answering makes calls fail within the deadline
// (lowered to 1s here); the mount comes back with the server, and can be
// unmounted while the server is away, with umount or umount -l.
func TestServerGone(t *testing.T) {
	needMounts(t)
	const deadline = time.Second
	env := "NFSMOUNT_TIMEOUT=" + deadline.String()
	// The kernel may send a LOOKUP twice (revalidation, then lookup).
	const within = 4*deadline + 3*time.Second

	t.Run("paused", func(t *testing.T) {
		srv := startServer(t)
		dir := mountShare(t, srv, "", env)
		pids := daemons(dir)
		p := filepath.Join(dir, "f")
		writeFile(t, p, "x")
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}

		srv.gate.setPaused(true)
		start := time.Now()
		_, err = os.Stat(p)
		t.Logf("stat with the server paused: %v after %v", err, time.Since(start))
		if err == nil || time.Since(start) > within {
			t.Errorf("stat with the server paused: %v after %v", err, time.Since(start))
		}
		start = time.Now()
		_, err = f.ReadAt(make([]byte, 1), 0)
		wantErrno(t, err, syscall.EIO, "read with the server paused")
		t.Logf("read with the server paused: %v after %v", err, time.Since(start))
		if time.Since(start) > within {
			t.Errorf("read with the server paused took %v", time.Since(start))
		}
		_ = f.Close()

		srv.gate.setPaused(false) // back: the helper reconnects
		if got := readFile(t, p); got != "x" {
			t.Errorf("read after the server came back: %q", got)
		}

		srv.gate.setPaused(true)
		_, _ = os.Stat(p)
		umount(t, dir)
		checkGone(t, dir, pids)
	})

	t.Run("stopped", func(t *testing.T) {
		srv := startServer(t)
		dir := mountShare(t, srv, "", env)
		pids := daemons(dir)
		p := filepath.Join(dir, "f")
		writeFile(t, p, "x")
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()

		srv.gate.stop()
		start := time.Now()
		_, err = f.ReadAt(make([]byte, 1), 0)
		wantErrno(t, err, syscall.EIO, "read with the server stopped")
		_, err = os.Stat(p)
		wantErrno(t, err, syscall.EIO, "stat with the server stopped")
		if time.Since(start) > within {
			t.Errorf("calls with the server stopped took %v", time.Since(start))
		}

		umount(t, "-l", dir) // busy: f is open
		if e := mountEntry(dir); e != nil {
			t.Errorf("after umount -l: %v", e)
		}
		_ = f.Close() // the last reference: the daemon goes
		checkGone(t, dir, pids)
	})
}

// TestHardMount: with NFSMOUNT_HARD set, a share mounted hard behaves as a
// kernel hard mount whose server stopped answering: a call waits, past
// every per-call deadline, until the server is back, and then succeeds; a
// signal does not end it; a forced unmount (MNT_FORCE, which aborts the
// FUSE connection as it aborts the RPCs of a kernel NFS mount) does, and
// then the daemon goes. soft in the options keeps the deadline.
func TestHardMount(t *testing.T) {
	needMounts(t)
	const deadline = time.Second
	env := []string{"NFSMOUNT_TIMEOUT=" + deadline.String(), "NFSMOUNT_HARD=1"}
	srv := startServer(t)
	dir := mountShare(t, srv, "", env...)
	t.Cleanup(func() { srv.gate.setPaused(false) }) // before the unmount of cleanup
	pids := daemons(dir)
	p := filepath.Join(dir, "f")
	writeFile(t, p, "x")

	// stat runs a stat of p in the background.
	stat := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := os.Stat(p)
			done <- err
		}()
		return done
	}
	srv.gate.setPaused(true)
	first := stat()
	// Several deadlines pass: a soft mount would have failed the call
	// with EIO by now (TestServerGone), a hard one still waits.
	select {
	case err := <-first:
		t.Fatalf("stat with the server paused returned %v: a hard mount waits for the server", err)
	case <-time.After(4*deadline + 3*time.Second):
	}
	srv.gate.setPaused(false)
	select {
	case err := <-first:
		if err != nil {
			t.Errorf("stat after the server came back: %v", err)
		}
	case <-time.After(60 * time.Second): // a hang guard
		t.Fatal("stat still waiting 60s after the server came back")
	}
	if got := readFile(t, p); got != "x" {
		t.Errorf("read after the server came back: %q", got)
	}

	srv.gate.setPaused(true)
	second := stat()
	select {
	case err := <-second:
		t.Fatalf("stat with the server paused again returned %v", err)
	case <-time.After(2*deadline + time.Second):
	}
	// A forced unmount ends the call (ENOTCONN: the connection is
	// aborted) and the mount; nothing asks the server.
	if err := syscall.Unmount(dir, syscall.MNT_FORCE); err != nil {
		t.Logf("umount -f: %v; lazily then", err)
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Fatalf("umount -l: %v", err)
		}
	}
	select {
	case err := <-second:
		if err == nil {
			t.Error("stat through a forced unmount succeeded; want an error")
		}
		t.Logf("stat through the forced unmount: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("stat still waiting 60s after a forced unmount")
	}
	checkGone(t, dir, pids)

	// soft: the deadline holds, as without NFSMOUNT_HARD.
	srv.gate.setPaused(false)
	soft := mountShare(t, srv, ",soft", env...)
	srv.gate.setPaused(true)
	if _, err := os.Stat(filepath.Join(soft, "f")); !errors.Is(err, syscall.EIO) {
		t.Errorf("stat of a soft mount with the server paused: %v, want EIO", err)
	}
	srv.gate.setPaused(false)
}

// (f) mount returns at once, its output closed: the daemon keeps none of
// mount's descriptors (CombinedOutput waits for them all to close).
func TestMountReturnsPromptly(t *testing.T) {
	needMounts(t)
	srv := startServer(t)
	dir := t.TempDir()
	t.Cleanup(func() { cleanup(t, dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	out, err := mountCmd(ctx, "127.0.0.1:/export", dir, fmt.Sprintf("%s,port=%d", driverOpts, srv.port)).CombinedOutput()
	if ctx.Err() != nil || err != nil {
		t.Fatalf("mount: %v (context %v) after %v: %q", err, ctx.Err(), time.Since(start), out)
	}
	t.Logf("mount took %v", time.Since(start))
	pids := daemons(dir)
	if mountEntry(dir) == nil || len(pids) != 1 {
		t.Fatalf("not mounted: %v, daemons %v", mountEntry(dir), pids)
	}
	umount(t, dir)
	checkGone(t, dir, pids)
}
