// Command render-manifests regenerates deploy/kubernetes from the Helm chart's default values.
//
//	cd test/chart && go run ./cmd/render-manifests
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vsphere-cns/vsphere-csi/test/chart"
)

func main() {
	check := flag.Bool("check", false, "only report whether deploy/kubernetes is up to date (exit 1 if not)")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "render-manifests:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	root, err := chart.RepoRoot()
	if err != nil {
		return err
	}
	files, err := chart.PlainManifests(root)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, chart.PlainPath)
	if check {
		drift, err := chart.PlainDrift(dir, files)
		if err != nil {
			return err
		}
		for _, d := range drift {
			fmt.Println(d)
		}
		if len(drift) > 0 {
			return fmt.Errorf("%s is out of date: run %s", chart.PlainPath, chart.RegenerateCommand)
		}
		return nil
	}
	if err := chart.WritePlainManifests(dir, files); err != nil {
		return err
	}
	fmt.Printf("wrote %d files to %s\n", len(files), chart.PlainPath)
	return nil
}
