package nfsmount

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Version is what `mount.nfs4 -V` prints; it holds the marker that tells
// this helper's binary from a real mount.nfs.
const Version = magic + " (NFSv3 client over FUSE, a stand-in for the kernel's NFS client in tests)"

// magic is in every binary of this helper: Uninstall removes only files
// that hold it.
const magic = "vsphere-csi-test-nfs-helper/v1"

// Exit statuses, as mount.nfs's.
const (
	exitOK    = 0
	exitUsage = 1
	exitFail  = 32
)

const (
	timeoutEnv = "NFSMOUNT_TIMEOUT" // overrides CallTimeout (a Go duration)
	hardEnv    = "NFSMOUNT_HARD"    // non-empty: mounts are hard unless soft (hardMount)
	debugEnv   = "NFSMOUNT_DEBUG"   // non-empty: log every FUSE request, keep the log
	daemonEnv  = "_NFSMOUNT_DAEMON" // set in the daemon; its status pipe is fd 3
	logEnv     = "_NFSMOUNT_LOG"    // the daemon's log file

	runDir = "/run/nfsmount" // logs, and the install lock
)

// Main runs the helper with command line args (args[0] naming it, as
// mount.nfs4 or mount.nfs) and returns its exit status. Besides mounting
// it answers -V (version), --install, --uninstall and --kernel-has-nfs
// (exit status 0 when this machine's kernel mounts NFS itself, exitFail
// when not: the helper is needed; see README.md).
func Main(args []string) int {
	if v := os.Getenv(timeoutEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			CallTimeout = d
		}
	}
	prog := filepath.Base(args[0])
	if len(args) == 2 {
		switch args[1] {
		case "-V", "--version":
			fmt.Println(prog + ": " + Version)
			return exitOK
		case "-h", "--help":
			usage(os.Stdout, prog)
			return exitOK
		case "--install":
			return cliInstall(prog)
		case "--uninstall":
			return cliUninstall(prog)
		case "--kernel-has-nfs":
			if KernelHasNFS() {
				return exitOK
			}
			return exitFail
		}
	}
	r, err := parseArgs(args[0], args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		if errors.Is(err, errUsage) {
			usage(os.Stderr, prog)
			return exitUsage
		}
		return exitFail
	}
	if os.Getenv(daemonEnv) != "" {
		return r.serve()
	}
	return r.run(args)
}

func usage(w io.Writer, prog string) {
	fmt.Fprintf(w, "usage: %s remotetarget dir [-rvVwfnsh] [-o nfsoptions]\n", prog)
	fmt.Fprintf(w, "       %s --install | --uninstall | --kernel-has-nfs\n", prog)
}

func (r *request) fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "%s: %s\n", r.prog, fmt.Sprintf(format, a...))
	return exitFail
}

// run is the helper as mount(8) runs it: it starts the daemon that mounts
// and serves the share, and returns once the mount is there or failed.
func (r *request) run(args []string) int {
	for _, w := range r.warnings {
		fmt.Fprintf(os.Stderr, "%s: %s\n", r.prog, w)
	}
	if fi, err := os.Stat(r.dir); err != nil {
		return r.fail("mount point %s does not exist", r.dir)
	} else if !fi.IsDir() {
		return r.fail("mount point %s is not a directory", r.dir)
	}
	if r.fake {
		return exitOK
	}
	if r.remount { // only the mount flags can change
		if err := syscall.Mount(r.spec, r.dir, "", syscall.MS_REMOUNT|r.flags, ""); err != nil {
			return r.fail("remount of %s failed: %v", r.dir, err)
		}
		return exitOK
	}
	return r.spawn(args)
}

// spawn starts this program again as a daemon in a session of its own,
// with none of mount's descriptors (mount's caller reads its output to
// the end), and waits for its verdict on the status pipe.
func (r *request) spawn(args []string) int {
	closeOnExec()
	pr, pw, err := os.Pipe()
	if err != nil {
		return r.fail("%v", err)
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return r.fail("%v", err)
	}
	logFile, logPath := openLog()
	if logFile == nil {
		logFile = devNull
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = args
	cmd.Env = append(os.Environ(), daemonEnv+"=1", logEnv+"="+logPath)
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, logFile, logFile
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	_ = pw.Close()
	_ = logFile.Close()
	_ = devNull.Close()
	if err != nil {
		return r.fail("cannot start the daemon: %v", err)
	}

	verdict := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		verdict <- string(b)
	}()
	var msg string
	select {
	case msg = <-verdict:
	case <-time.After(CallTimeout + 30*time.Second):
		_ = cmd.Process.Kill()
		msg = "error Connection timed out\n"
	}
	_ = cmd.Process.Release()
	switch {
	case msg == "ok\n":
		if r.verbose {
			fmt.Printf("%s: %s mounted on %s (pid %d, log %s)\n", r.prog, r.spec, r.dir, cmd.Process.Pid, logPath)
		}
		return exitOK
	case strings.HasPrefix(msg, "error "):
		if logPath != "" {
			_ = os.Remove(logPath)
		}
		return r.fail("%s", strings.TrimSpace(strings.TrimPrefix(msg, "error ")))
	}
	return r.fail("mounting %s failed: the daemon died (see %s)", r.spec, logPath)
}

// closeOnExec keeps the descriptors this process inherited beyond
// stdin, stdout and stderr out of the daemon.
func closeOnExec() {
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// openLog creates the daemon's log file under /run/nfsmount (or the
// temporary directory).
func openLog() (*os.File, string) {
	name := fmt.Sprintf("mount-%d-%d.log", os.Getpid(), time.Now().UnixNano())
	for _, dir := range []string{runDir, os.TempDir()} {
		if os.MkdirAll(dir, 0o755) != nil {
			continue
		}
		p := filepath.Join(dir, name)
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			return f, p
		}
	}
	return nil, ""
}

// serve is the daemon: it mounts the share, says so on fd 3, and serves
// it until it is unmounted.
func (r *request) serve() int {
	status := os.NewFile(3, "status")
	report := func(msg string) bool {
		_, err := status.WriteString(msg)
		_ = status.Close()
		return err == nil
	}
	log.SetPrefix(fmt.Sprintf("%s[%d]: ", r.prog, os.Getpid()))
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)

	s := newSession(r.nfsAddr(), r.mountAddr(), r.path)
	if err := s.start(context.Background()); err != nil {
		s.close()
		log.Printf("mounting %s failed: %v", r.spec, err)
		report("error " + mountMessage(r.spec, err) + "\n")
		return exitFail
	}
	server, err := r.mountFUSE(s)
	if err != nil {
		s.close()
		log.Printf("mounting %s on %s failed: %v", r.spec, r.dir, err)
		report("error mount system call failed: " + err.Error() + "\n")
		return exitFail
	}
	if !report("ok\n") { // mount gave up waiting
		_ = syscall.Unmount(r.dir, syscall.MNT_DETACH)
		server.Wait()
		s.close()
		return exitFail
	}
	log.Printf("mounted %s on %s", r.spec, r.dir)

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		log.Printf("%v: unmounting %s", <-sig, r.dir)
		_ = syscall.Unmount(r.dir, syscall.MNT_DETACH)
	}()
	server.Wait() // until the kernel ends the FUSE connection: umount
	s.close()
	log.Printf("unmounted %s", r.dir)
	if p := os.Getenv(logEnv); p != "" && os.Getenv(debugEnv) == "" {
		_ = os.Remove(p)
	}
	return exitOK
}

// hardMount says whether the share's calls wait for a server that does not
// answer for as long as it takes, as the kernel's hard mounts do (its
// default): with NFSMOUNT_HARD set in the environment, unless the options
// say soft. Without it every call has a deadline, CallTimeout, whatever
// the options say: most tests want a server that went away to fail calls,
// not to hang them.
func (r *request) hardMount() bool {
	return os.Getenv(hardEnv) != "" && !r.soft
}

// mountFUSE mounts the share's root on r.dir and starts serving it.
func (r *request) mountFUSE(s *session) (*fuse.Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	root, err := s.getattr(ctx, s.rootHandle())
	if err != nil {
		return nil, err
	}
	flags := r.flags
	if flags == 0 {
		flags = syscall.MS_MGC_VAL // no flags (go-fuse's default is nosuid,nodev)
	}
	zero := time.Duration(0)
	opts := &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		NullPermissions: true, // the server's modes, as they are
		MountOptions: fuse.MountOptions{
			FsName:             r.spec,   // the source in /proc/mounts
			Name:               r.fstype, // the type: fuse.nfs4
			AllowOther:         true,
			DirectMountStrict:  true, // no fusermount: we are root
			DirectMountFlags:   flags,
			DisableXAttrs:      true,
			DisableReadDirPlus: true,
			MaxWrite:           blockSize,
			Debug:              os.Getenv(debugEnv) != "",
			Logger:             log.Default(),
		},
	}
	if id := (fs.StableAttr{Ino: root.Fileid}); !id.Reserved() {
		opts.RootStableAttr = &id
	}
	s.hard.Store(r.hardMount()) // the mount itself was bounded, its calls may not be
	server, err := fs.Mount(r.dir, &node{s: s}, opts)
	if err == nil {
		if fd := fuseFD(); fd >= 0 {
			gone := func() bool { return fuseAborted(fd) }
			s.fuseGone.Store(&gone)
		}
	}
	return server, err
}

// fuseFD is this daemon's descriptor of /dev/fuse (it serves one mount),
// -1 if none is found.
func fuseFD() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "/dev/fuse" {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				return fd
			}
		}
	}
	return -1
}

// fuseAborted says whether the kernel ended the FUSE connection on fd: it
// then polls as an error (a live one never does).
func fuseAborted(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd)}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0 && p[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0
}
