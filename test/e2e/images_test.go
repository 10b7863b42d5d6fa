package e2e

import (
	"archive/tar"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/dockerfile"
	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/oci"
)

// driverImage is the image hack/e2e.sh builds from the Dockerfile
// (cmd/driverimage) and imports into the node's containerd.
const driverImage = "ghcr.io/vsphere-cns/vsphere-csi:e2e"

// TestDriverImageFollowsDockerfile: the image built without Docker is the
// one the Dockerfile describes (packages installed, the binary where COPY
// puts it, built with the Dockerfile's go build flags, the user, the
// entrypoint, the labels), and kubelet runs it: the node plugin's tools
// answer inside it.
func TestDriverImageFollowsDockerfile(t *testing.T) {
	t.Parallel()
	spec, err := dockerfile.Parse(filepath.Join(env.root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := oci.Read(filepath.Join(env.images, "vsphere-csi.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != driverImage {
		t.Errorf("image name %q, want %q", img.Name, driverImage)
	}
	if img.Config.User != spec.User {
		t.Errorf("user %q, the Dockerfile's USER %q", img.Config.User, spec.User)
	}
	if !slices.Equal(img.Config.Entrypoint, spec.Entrypoint) {
		t.Errorf("entrypoint %q, the Dockerfile's ENTRYPOINT %q", img.Config.Entrypoint, spec.Entrypoint)
	}
	version := img.Config.Labels["org.opencontainers.image.version"]
	for k, v := range spec.Labels {
		if want := strings.ReplaceAll(v, "${VERSION}", version); img.Config.Labels[k] != want {
			t.Errorf("label %s=%q, the Dockerfile's %q", k, img.Config.Labels[k], want)
		}
	}

	checkNFSLayer(t, img)

	// Debian's packages, as apt-get left them.
	status, _, ok := img.File("/var/lib/dpkg/status")
	if !ok {
		t.Fatal("no /var/lib/dpkg/status: not a Debian root filesystem")
	}
	installed := map[string]bool{}
	for _, para := range strings.Split(string(status), "\n\n") {
		var pkg string
		for _, line := range strings.Split(para, "\n") {
			if p, ok := strings.CutPrefix(line, "Package: "); ok {
				pkg = p
			}
			if line == "Status: install ok installed" && pkg != "" {
				installed[pkg] = true
			}
		}
	}
	for _, p := range spec.Packages {
		if !installed[p] {
			t.Errorf("package %s of the Dockerfile is not installed in the image", p)
		}
	}
	// /etc/os-release: a link to /usr/lib/os-release, followed.
	if osRelease, _, _ := img.File("/etc/os-release"); !strings.Contains(string(osRelease), "VERSION_CODENAME="+spec.Release) {
		t.Errorf("/etc/os-release is not Debian %s's:\n%s", spec.Release, osRelease)
	}

	// The binary, built as the Dockerfile's go build builds it.
	bin, mode, ok := img.File(spec.BinaryPath)
	if !ok {
		t.Fatalf("no %s in the image", spec.BinaryPath)
	}
	if mode&0o111 == 0 {
		t.Errorf("%s is not executable (mode %o)", spec.BinaryPath, mode)
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", spec.BinaryPath, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for _, e := range spec.BuildEnv {
		k, v, _ := strings.Cut(e, "=")
		if settings[k] != v {
			t.Errorf("built with %s=%q, the Dockerfile's go build has %s", k, settings[k], e)
		}
	}
	for _, f := range spec.BuildFlags {
		if settings[f] != "true" {
			t.Errorf("built without %s, which the Dockerfile's go build has (settings %v)", f, settings)
		}
	}
	// Go records -ldflags only without -trimpath (they may hold paths), so
	// their effects are checked: -s no symbol table, -w no DWARF, and
	// -X main.version by --version in the pod below.
	ldflags := strings.Fields(strings.ReplaceAll(spec.LDFlags, "${VERSION}", version))
	if got, ok := settings["-ldflags"]; ok && got != strings.Join(ldflags, " ") {
		t.Errorf("built with -ldflags %q, the Dockerfile's go build has %q", got, spec.LDFlags)
	}
	exe, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for flag, section := range map[string]string{"-s": ".symtab", "-w": ".debug_info"} {
		if has := exe.Section(section) != nil; has == slices.Contains(ldflags, flag) {
			t.Errorf("the binary has section %s: %v; the Dockerfile's -ldflags %q", section, has, spec.LDFlags)
		}
	}
	var xVersion string
	for i, f := range ldflags {
		if f == "-X" && i+1 < len(ldflags) {
			xVersion, _ = strings.CutPrefix(ldflags[i+1], "main.version=")
		}
	}
	if want := bi.Main.Path + strings.TrimPrefix(spec.Package, "."); bi.Path != want {
		t.Errorf("the binary is %s, the Dockerfile builds %s", bi.Path, want)
	}

	// kubelet runs it (imported into the node's containerd, never pulled),
	// as the image's user, with the tools the node plugin runs.
	out := runForOutput(t, "driver-image-tools", driverImage, "/bin/sh", "-c",
		spec.BinaryPath+" --version && id -u && mkfs.ext4 -V && mkfs.xfs -V && blkid -V && findmnt --version && "+
			"mount.nfs4 -V && udevadm --version && test -s /etc/ssl/certs/ca-certificates.crt && echo tools-ok")
	uid, _, _ := strings.Cut(spec.User, ":")
	for _, want := range []string{"vsphere-csi " + xVersion + "\n", "\n" + uid + "\n", "tools-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("the pod's output lacks %q:\n%s", want, out)
		}
	}
}

// checkNFSLayer: the image's layers are the Dockerfile's two (root
// filesystem, binary) and, exactly where this kernel has no NFS client (as
// bin/mount.nfs --kernel-has-nfs, which hack/e2e.sh asks, decides), one
// more that holds only the test NFS client, bin/mount.nfs, as mount.nfs4
// and mount.nfs (so that the node plugin's pods can mount file shares
// here; a real node's kernel mounts them with nfs-common's).
func checkNFSLayer(t *testing.T, img oci.Image) {
	t.Helper()
	helperPath := filepath.Join(env.root, "bin", "mount.nfs")
	helper, err := os.ReadFile(helperPath)
	if err != nil {
		t.Fatal(err)
	}
	kernelHasNFS := exec.Command(helperPath, "--kernel-has-nfs").Run() == nil
	if want := map[bool]int{true: 2, false: 3}[kernelHasNFS]; len(img.Layers) != want {
		t.Fatalf("%d layers, want %d: the Dockerfile's 2, and the test NFS client's only where the kernel has no NFS client (it has: %v)",
			len(img.Layers), want, kernelHasNFS)
	}
	if kernelHasNFS {
		return
	}
	tr := tar.NewReader(bytes.NewReader(img.Layers[2]))
	var files []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		files = append(files, h.Name)
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || !bytes.Equal(data, helper) {
			t.Errorf("third layer: %s is not %s", h.Name, helperPath)
		}
	}
	slices.Sort(files)
	if want := []string{"usr/sbin/mount.nfs", "usr/sbin/mount.nfs4"}; !slices.Equal(files, want) {
		t.Errorf("third layer holds %v, want only %v", files, want)
	}
}

// runForOutput runs a pod of one container (host network, the image never
// pulled) to completion and returns its output.
func runForOutput(t *testing.T, name, image string, command ...string) string {
	t.Helper()
	cleanupPod(t, name)
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			HostNetwork: true, RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: image, ImagePullPolicy: corev1.PullNever, Command: command}},
		},
	}
	runPod(t, pod)
	defer cleanupPod(t, name)
	p, err := env.kube.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The container's log as kubelet wrote it on this node (the API
	// server's log proxy needs node addresses our loopback node lacks):
	// CRI lines "<time> <stream> <F|P> <text>".
	data, err := os.ReadFile(filepath.Join(env.cluster.PodLogs, fmt.Sprintf("%s_%s_%s", ns, name, p.UID), "main", "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out.WriteString(f[3])
			if f[2] == "F" {
				out.WriteString("\n")
			}
		}
	}
	return out.String()
}

// TestSidecarImages: each sidecar image hack/e2e.sh made from the binary it
// built is in the node's containerd, named as the chart names it, and runs.
func TestSidecarImages(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(env.images)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "csi-") || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		n++
		img, err := oci.Read(filepath.Join(env.images, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		binName := strings.TrimSuffix(e.Name(), ".tar")
		if !strings.HasPrefix(img.Name, "registry.k8s.io/sig-storage/"+binName+":v") {
			t.Errorf("%s: image %q, want registry.k8s.io/sig-storage/%s:v...", e.Name(), img.Name, binName)
		}
		// --help prints the flags and exits 0 (Go's flag package).
		out := runForOutput(t, "image-"+binName, img.Name, img.Config.Entrypoint[0], "--help")
		if !strings.Contains(out, "-kubeconfig") {
			t.Errorf("%s --help in its image:\n%s", binName, out)
		}
	}
	if n < 4 {
		t.Errorf("%d sidecar images in %s, want provisioner, attacher, resizer and snapshotter", n, env.images)
	}
}
