// Package oci writes and reads OCI image archives (an OCI image layout in a
// tar, one image, `ctr -n k8s.io images import` accepts it) without a
// registry or a Docker engine: make e2e builds its images with it.
package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Epoch is every file's and the image's time: images built twice from the
// same input are the same bytes.
var Epoch = time.Unix(0, 0)

// Config is the part of an image's configuration make e2e sets.
type Config struct {
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	User       string            `json:"User,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// Image is what goes into an archive: layers (uncompressed tars, the base
// first) and the configuration.
type Image struct {
	Name   string // e.g. ghcr.io/vsphere-cns/vsphere-csi:e2e
	Layers [][]byte
	Config Config
}

type blob struct {
	digest string
	data   []byte
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

// Write writes the image as an OCI archive to out.
func Write(img Image, out string) error {
	var layers []blob
	var diffIDs []string
	for _, l := range img.Layers {
		diffIDs = append(diffIDs, newBlob(l).digest)
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		if _, err := zw.Write(l); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		layers = append(layers, newBlob(gz.Bytes()))
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      Epoch.UTC().Format(time.RFC3339),
		"config":       img.Config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return err
	}
	configBlob := newBlob(config)
	var layerDescs []any
	for _, l := range layers {
		layerDescs = append(layerDescs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": len(l.data)})
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configBlob.digest, "size": len(configBlob.data)},
		"layers":        layerDescs,
	})
	if err != nil {
		return err
	}
	manifestBlob := newBlob(manifest)
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      manifestBlob.digest,
			"size":        len(manifestBlob.data),
			"platform":    map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
			"annotations": map[string]string{"io.containerd.image.name": img.Name, "org.opencontainers.image.ref.name": img.Name},
		}},
	})
	if err != nil {
		return err
	}

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	aw := tar.NewWriter(f)
	write := func(name string, data []byte) error {
		if err := aw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch}); err != nil {
			return err
		}
		_, err := aw.Write(data)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := aw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: Epoch}); err != nil {
			f.Close()
			return err
		}
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		f.Close()
		return err
	}
	for _, b := range append(layers, configBlob, manifestBlob) {
		if err := write("blobs/sha256/"+strings.TrimPrefix(b.digest, "sha256:"), b.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := write("index.json", index); err != nil {
		f.Close()
		return err
	}
	if err := aw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// Layer builds a layer (an uncompressed tar) of files: entries are SRC=DST
// (a file copied, its mode kept) or LINK->TARGET (a symlink). Parent
// directories are created; /tmp is there (world-writable, sticky) unless
// noTmp.
func Layer(entries []string, noTmp bool) ([]byte, error) {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parents []string
		for d := path.Dir(p); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		sort.Strings(parents)
		for _, d := range parents {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: Epoch}); err != nil {
				return err
			}
		}
		return nil
	}
	if !noTmp {
		dirs["/tmp"] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: Epoch}); err != nil {
			return nil, err
		}
	}
	for _, e := range entries {
		if link, target, ok := strings.Cut(e, "->"); ok {
			if err := mkdirs("/" + strings.TrimPrefix(link, "/")); err != nil {
				return nil, err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(link, "/"), Linkname: target, Mode: 0o777, ModTime: Epoch}); err != nil {
				return nil, err
			}
			continue
		}
		src, dst, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want SRC=DST or LINK->TARGET", e)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if err := mkdirs("/" + strings.TrimPrefix(dst, "/")); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: int64(st.Mode().Perm()), Size: int64(len(data)), ModTime: Epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return layer.Bytes(), nil
}

// Read reads an archive Write wrote (one image): its name, configuration
// and layers, uncompressed.
func Read(archive string) (Image, error) {
	f, err := os.Open(archive)
	if err != nil {
		return Image{}, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Image{}, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return Image{}, err
		}
		files[h.Name] = data
	}
	blobOf := func(digest string) ([]byte, error) {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(digest, "sha256:")]
		if !ok {
			return nil, fmt.Errorf("%s: no blob %s", archive, digest)
		}
		if newBlob(b).digest != digest {
			return nil, fmt.Errorf("%s: blob %s does not have that digest", archive, digest)
		}
		return b, nil
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		return Image{}, fmt.Errorf("%s: index.json: want one manifest (%v)", archive, err)
	}
	mb, err := blobOf(index.Manifests[0].Digest)
	if err != nil {
		return Image{}, err
	}
	var manifest struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(mb, &manifest); err != nil {
		return Image{}, err
	}
	cb, err := blobOf(manifest.Config.Digest)
	if err != nil {
		return Image{}, err
	}
	var config struct {
		Config Config `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cb, &config); err != nil {
		return Image{}, err
	}
	img := Image{Name: index.Manifests[0].Annotations["io.containerd.image.name"], Config: config.Config}
	for i, l := range manifest.Layers {
		gz, err := blobOf(l.Digest)
		if err != nil {
			return Image{}, err
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			return Image{}, err
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return Image{}, err
		}
		if i >= len(config.RootFS.DiffIDs) || newBlob(data).digest != config.RootFS.DiffIDs[i] {
			return Image{}, fmt.Errorf("%s: layer %d does not match its diff ID", archive, i)
		}
		img.Layers = append(img.Layers, data)
	}
	return img, nil
}

// File is a regular file of the image, symbolic links followed (the last
// layer that has a name wins); ok false when there is none.
func (img Image) File(name string) (data []byte, mode int64, ok bool) {
	name = path.Clean("/" + name)
	for range 16 { // links to links, within reason
		var link string
		for _, l := range img.Layers {
			tr := tar.NewReader(bytes.NewReader(l))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				if path.Clean("/"+h.Name) != name {
					continue
				}
				switch h.Typeflag {
				case tar.TypeReg:
					data, _ = io.ReadAll(tr)
					mode, ok, link = h.Mode, true, ""
				case tar.TypeSymlink:
					data, mode, ok, link = nil, 0, false, h.Linkname
				}
			}
		}
		if link == "" {
			return data, mode, ok
		}
		if !path.IsAbs(link) {
			link = path.Join(path.Dir(name), link)
		}
		name = path.Clean(link)
	}
	return nil, 0, false
}
