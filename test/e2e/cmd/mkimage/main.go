// Command mkimage writes a one-layer OCI image archive that
// `ctr -n k8s.io images import` accepts, without a registry or Docker:
//
//	mkimage -name registry.k8s.io/pause:3.10 -o pause.tar -entrypoint /pause /path/to/pause=pause
//
// Each argument is SRC=DST (a file copied into the image, mode kept) or
// LINK->TARGET (a symlink). Parent directories are created, and /tmp.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/vsphere-cns/vsphere-csi/test/e2e/internal/oci"
)

func main() {
	name := flag.String("name", "", "image name, e.g. docker.io/library/busybox:e2e")
	out := flag.String("o", "", "output archive")
	entrypoint := flag.String("entrypoint", "", "entrypoint, space separated")
	cmd := flag.String("cmd", "", "cmd, space separated")
	user := flag.String("user", "", "the user the image runs as, e.g. 65532:65532")
	flag.Parse()
	if *name == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "mkimage: -name and -o are required")
		os.Exit(2)
	}
	layer, err := oci.Layer(flag.Args(), false)
	if err == nil {
		err = oci.Write(oci.Image{Name: *name, Layers: [][]byte{layer}, Config: oci.Config{
			Entrypoint: fields(*entrypoint), Cmd: fields(*cmd), User: *user,
			Env: []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"},
		}}, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func fields(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}
