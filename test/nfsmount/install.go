package nfsmount

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Installing the helper as /sbin/mount.nfs4 and /sbin/mount.nfs, where
// mount(8) looks for it. It goes there only on a machine that can't mount
// NFS otherwise (no NFS in the kernel, no mount.nfs), next to a marker
// file, and only files holding the helper's magic are ever removed.
// Several test processes may share one installation: each one that
// installs or finds it registers itself, and the last one out removes it
// (unless it was installed with --install, which stays until
// --uninstall).

// cmdPackage is the helper's command.
const cmdPackage = "github.com/vsphere-cns/vsphere-csi/test/nfsmount/cmd/mount.nfs"

const markerName = ".vsphere-csi-test-nfs-helper"

var helperNames = []string{"mount.nfs4", "mount.nfs"}

// Who installed the helper, as the marker file says.
const (
	byCLI  = "cli"  // --install: stays until --uninstall
	byTest = "test" // EnsureInstalled: the last process out removes it
)

// KernelHasNFS reports whether this machine's kernel can mount NFS
// itself: nfs or nfs4 in /proc/filesystems, or an nfs module that
// `modprobe -n nfs` would load.
func KernelHasNFS() bool {
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && (f[len(f)-1] == "nfs" || f[len(f)-1] == "nfs4") {
				return true
			}
		}
	}
	modprobe, err := exec.LookPath("modprobe")
	if err != nil {
		for _, p := range []string{"/sbin/modprobe", "/usr/sbin/modprobe"} {
			if _, err := os.Stat(p); err == nil {
				modprobe = p
			}
		}
	}
	return modprobe != "" && exec.Command(modprobe, "-n", "-q", "nfs").Run() == nil
}

// Build compiles the helper with `go build` into dir (a temporary one if
// empty: the caller removes it) and returns the binary's path. It needs
// the module's source, as tests have.
func Build(dir string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "nfsmount-"); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, "mount.nfs")
	cmd := exec.Command("go", "build", "-o", bin, cmdPackage)
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		cmd.Dir = filepath.Dir(file) // inside the module, wherever the caller is
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", cmdPackage, err, out)
	}
	return bin, nil
}

// EnsureInstalled installs the helper, built with Build into buildDir,
// as /sbin/mount.nfs4 and /sbin/mount.nfs when the kernel has no NFS and
// neither file exists, or refreshes it when it is this helper already.
// It returns whether this helper is what mount(8) now runs for NFS (false:
// the machine mounts NFS without it). The calling process then holds
// the installation until it calls Uninstall (from TestMain, say).
func EnsureInstalled(buildDir string) (installed bool, err error) {
	ok, _, err := defaultInstaller().install("", buildDir, byTest)
	return ok, err
}

// Uninstall releases the calling process's hold on the installation and,
// if no other live process holds it and EnsureInstalled put it there,
// removes the helper and its marker. It never removes a file that is not
// this helper.
func Uninstall() error { return defaultInstaller().uninstall(false) }

// installer installs into sbin, keeping its lock and holders under run.
type installer struct {
	sbin, run string
	hasNFS    func() bool
}

func defaultInstaller() installer { return installer{"/sbin", runDir, KernelHasNFS} }

// install puts bin (built into buildDir if "") in place. It returns
// whether the helper is installed, and if not, why.
func (in installer) install(bin, buildDir, by string) (bool, string, error) {
	if in.hasNFS() {
		return false, "the kernel has NFS", nil
	}
	unlock, err := in.lock()
	if err != nil {
		return false, "", err
	}
	defer unlock()
	for _, name := range helperNames {
		if p := filepath.Join(in.sbin, name); exists(p) && !isHelper(p) {
			return false, p + " exists and is not this helper", nil
		}
	}
	if bin == "" {
		if buildDir == "" {
			if buildDir, err = os.MkdirTemp("", "nfsmount-"); err != nil {
				return false, "", err
			}
			defer func() { _ = os.RemoveAll(buildDir) }()
		}
		if bin, err = Build(buildDir); err != nil {
			return false, "", err
		}
	}
	for _, name := range helperNames {
		if err := copyFile(bin, filepath.Join(in.sbin, name)); err != nil {
			return false, "", err
		}
	}
	marker := filepath.Join(in.sbin, markerName)
	if in.installedBy() != byCLI { // a hand-made installation stays one
		text := fmt.Sprintf("%s\nby=%s\n# %s; remove with: mount.nfs --uninstall\n", magic, by, strings.Join(helperNames, ", "))
		if err := os.WriteFile(marker, []byte(text), 0o644); err != nil {
			return false, "", err
		}
	}
	if by == byTest {
		if err := os.MkdirAll(in.holders(), 0o755); err != nil {
			return false, "", err
		}
		if err := os.WriteFile(filepath.Join(in.holders(), strconv.Itoa(os.Getpid())), nil, 0o644); err != nil {
			return false, "", err
		}
	}
	return true, "", nil
}

// uninstall removes the helper: at once from the command line (cli),
// else as Uninstall says. It returns the files removed.
func (in installer) uninstall(cli bool) error {
	_, err := in.remove(cli)
	return err
}

func (in installer) remove(cli bool) ([]string, error) {
	unlock, err := in.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !cli {
		_ = os.Remove(filepath.Join(in.holders(), strconv.Itoa(os.Getpid())))
		if in.liveHolders() > 0 || in.installedBy() != byTest {
			return nil, nil
		}
	}
	marker := filepath.Join(in.sbin, markerName)
	if !exists(marker) {
		return nil, nil // none of ours: nothing to remove
	}
	var removed []string
	for _, name := range helperNames {
		if p := filepath.Join(in.sbin, name); isHelper(p) {
			if err := os.Remove(p); err != nil {
				return removed, err
			}
			removed = append(removed, p)
		}
	}
	if err := os.Remove(marker); err != nil {
		return removed, err
	}
	_ = os.RemoveAll(in.holders())
	return append(removed, marker), nil
}

// installedBy reads the marker: byCLI, byTest, or "" (none).
func (in installer) installedBy() string {
	b, err := os.ReadFile(filepath.Join(in.sbin, markerName))
	if err != nil {
		return ""
	}
	if strings.Contains(string(b), "by="+byCLI+"\n") {
		return byCLI
	}
	return byTest
}

func (in installer) holders() string { return filepath.Join(in.run, "holders") }

// liveHolders counts the processes holding the installation, forgetting
// the dead ones.
func (in installer) liveHolders() int {
	entries, _ := os.ReadDir(in.holders())
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && pid > 0 && (syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM)) {
			n++
			continue
		}
		_ = os.Remove(filepath.Join(in.holders(), e.Name()))
	}
	return n
}

// lock takes the installation lock (flock on run/install.lock).
func (in installer) lock() (func(), error) {
	if err := os.MkdirAll(in.run, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(in.run, "install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}

// isHelper reports whether path is a regular file holding this helper's
// magic: a binary of this helper.
func isHelper(path string) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(magic))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// copyFile installs src as dst (mode 0755) by renaming a copy into place:
// a running dst is not disturbed.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	tmp := fmt.Sprintf("%s.new-%d", dst, os.Getpid())
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// cliInstall is --install: it installs the running binary.
func cliInstall(prog string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		return exitUsage
	}
	in := defaultInstaller()
	ok, why, err := in.install(self, "", byCLI)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: install: %v\n", prog, err)
		return exitUsage
	case !ok:
		fmt.Printf("%s: not installed: %s\n", prog, why)
	default:
		fmt.Printf("%s: installed %s/{%s}\n", prog, in.sbin, strings.Join(helperNames, ","))
	}
	return exitOK
}

// cliUninstall is --uninstall: it removes the helper, if it is installed.
func cliUninstall(prog string) int {
	removed, err := defaultInstaller().remove(true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: uninstall: %v\n", prog, err)
		return exitUsage
	}
	if len(removed) == 0 {
		fmt.Printf("%s: nothing to remove\n", prog)
	} else {
		fmt.Printf("%s: removed %s\n", prog, strings.Join(removed, " "))
	}
	return exitOK
}
