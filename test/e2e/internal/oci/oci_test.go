package oci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteRead: an archive written reads back with its name, config and
// files, links followed; a file changed in it is refused by its digest.
func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := Layer([]string{src + "=/usr/lib/os-release", "etc/os-release->../usr/lib/os-release"}, true)
	if err != nil {
		t.Fatal(err)
	}
	top, err := Layer([]string{src + "=/usr/local/bin/tool"}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	cfg := Config{Entrypoint: []string{"/usr/local/bin/tool"}, User: "65532:65532", Labels: map[string]string{"a": "b"}}
	if err := Write(Image{Name: "example.com/tool:v1", Layers: [][]byte{base, top}, Config: cfg}, out); err != nil {
		t.Fatal(err)
	}
	img, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "example.com/tool:v1" || img.Config.User != cfg.User || !slices.Equal(img.Config.Entrypoint, cfg.Entrypoint) ||
		img.Config.Labels["a"] != "b" || len(img.Layers) != 2 {
		t.Errorf("read back %+v", img)
	}
	if data, mode, ok := img.File("/usr/local/bin/tool"); !ok || mode != 0o755 || string(data) != "#!/bin/sh\necho hi\n" {
		t.Errorf("tool: %q %o %v", data, mode, ok)
	}
	if data, _, ok := img.File("/etc/os-release"); !ok || string(data) != "#!/bin/sh\necho hi\n" {
		t.Errorf("/etc/os-release through its link: %q %v", data, ok)
	}
	if _, _, ok := img.File("/nope"); ok {
		t.Error("a missing file was found")
	}
	// The same input, the same bytes.
	again := filepath.Join(dir, "again.tar")
	if err := Write(Image{Name: "example.com/tool:v1", Layers: [][]byte{base, top}, Config: cfg}, again); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !slices.Equal(a, b) {
		t.Error("two writes of one image differ")
	}
}
