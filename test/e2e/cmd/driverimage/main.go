// Command driverimage builds the driver's image as the Dockerfile describes
// it, without a Docker engine, as an OCI archive for containerd:
//
//	driverimage -dockerfile Dockerfile -binary bin/vsphere-csi -version v0.1.0 \
//	    -cache ~/.cache/vsphere-csi-e2e/rootfs -name ghcr.io/vsphere-cns/vsphere-csi:v0.1.0 -o vsphere-csi.tar
//
// The runtime stage's root filesystem is Debian's: mmdebstrap installs the
// Dockerfile's release and packages (minbase, no recommends, as the
// Dockerfile's apt-get does on debian:<release>-slim), once per package
// list (cached). The binary is the one given, built by `make build` with the
// Makefile's flags (the e2e checks them against the Dockerfile's go build);
// the user, the entrypoint and the labels are the Dockerfile's.
//
// -add SRC=DST (repeatable) puts files the Dockerfile does not have in one
// more layer on top: hack/e2e.sh adds the test NFS client
// (test/nfsmount) as mount.nfs4 and mount.nfs where the kernel has no NFS
// client of its own; TestDriverImageFollowsDockerfile holds that layer to
// exactly that.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/dockerfile"
	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/oci"
)

// Mirrors of the Debian release (and its updates and security suites), as a
// debian:<release>-slim image has them.
var mirrors = []string{
	"deb http://deb.debian.org/debian %s main",
	"deb http://deb.debian.org/debian %s-updates main",
	"deb http://deb.debian.org/debian-security %s-security main",
}

func main() {
	df := flag.String("dockerfile", "Dockerfile", "the Dockerfile the image follows")
	binary := flag.String("binary", "bin/vsphere-csi", "the driver binary (make build)")
	version := flag.String("version", "dev", "the version the labels carry (the Dockerfile's VERSION)")
	cache := flag.String("cache", "", "directory of the cached root filesystems (required)")
	name := flag.String("name", "", "image name (required)")
	out := flag.String("o", "", "output archive (required)")
	var add addFlag
	flag.Var(&add, "add", "SRC=DST: a file the Dockerfile does not have, in one more layer (repeatable)")
	flag.Parse()
	if *cache == "" || *name == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "driverimage: -cache, -name and -o are required")
		os.Exit(2)
	}
	if err := run(*df, *binary, *version, *cache, *name, *out, add); err != nil {
		fmt.Fprintln(os.Stderr, "driverimage:", err)
		os.Exit(1)
	}
}

type addFlag []string

func (a *addFlag) String() string     { return strings.Join(*a, ",") }
func (a *addFlag) Set(v string) error { *a = append(*a, v); return nil }

func run(df, binary, version, cache, name, out string, add []string) error {
	spec, err := dockerfile.Parse(df)
	if err != nil {
		return err
	}
	base, err := rootfs(spec, cache)
	if err != nil {
		return err
	}
	bin, err := oci.Layer([]string{binary + "=" + spec.BinaryPath}, true)
	if err != nil {
		return err
	}
	layers := [][]byte{base, bin}
	if len(add) > 0 {
		extra, err := oci.Layer(add, true)
		if err != nil {
			return err
		}
		layers = append(layers, extra)
	}
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = strings.ReplaceAll(v, "${VERSION}", version)
	}
	return oci.Write(oci.Image{Name: name, Layers: layers, Config: oci.Config{
		Entrypoint: spec.Entrypoint,
		User:       spec.User,
		Labels:     labels,
		// debian:<release>-slim's.
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}}, out)
}

// rootfs is the runtime stage's root filesystem as a layer: from the cache,
// or made by mmdebstrap and cached under a key of release and packages.
func rootfs(spec dockerfile.Spec, cache string) ([]byte, error) {
	args := []string{"--variant=minbase", "--mode=root", "--format=tar",
		"--include=" + strings.Join(spec.Packages, ","),
		`--aptopt=APT::Install-Recommends "false"`,
		// What the -slim images leave out.
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
		`--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log`,
	}
	sum := sha256.Sum256([]byte(spec.Release + "\n" + strings.Join(args, "\n")))
	path := filepath.Join(cache, fmt.Sprintf("rootfs-%s-%s.tar", spec.Release, hex.EncodeToString(sum[:6])))
	if data, err := os.ReadFile(path); err == nil {
		fmt.Printf("    root filesystem: %s (cached)\n", path)
		return data, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	raw := path + ".mmdebstrap"
	cmdArgs := append(args, spec.Release, raw)
	for _, m := range mirrors {
		cmdArgs = append(cmdArgs, fmt.Sprintf(m, spec.Release))
	}
	start := time.Now()
	fmt.Printf("    root filesystem: mmdebstrap %s (%s), packages %s\n", spec.Release, spec.Base, strings.Join(spec.Packages, " "))
	cmd := exec.Command("mmdebstrap", cmdArgs...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		os.Remove(raw)
		return nil, fmt.Errorf("mmdebstrap: %v\n%s", err, lastLines(log.String(), 30))
	}
	defer os.Remove(raw)
	layer, err := asLayer(raw)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".tmp", layer, 0o644); err != nil {
		return nil, err
	}
	fmt.Printf("    root filesystem: %s, %d MiB, in %s\n", path, len(layer)>>20, time.Since(start).Round(time.Second))
	return layer, os.Rename(path+".tmp", path)
}

// asLayer turns mmdebstrap's tar into an image layer: names without "./",
// no device nodes (a container runtime makes /dev), the rest as it is.
func asLayer(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	tr, tw := tar.NewReader(f), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		h.Name = strings.TrimPrefix(h.Name, "./")
		if h.Name == "" || h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock || h.Typeflag == tar.TypeFifo {
			continue
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(h.Linkname, "./")
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
