package sim

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCopySparseKeepsHoles: a snapshot of a 1 GiB volume with a few bytes
// written copies those bytes, not a gigabyte of zeros.
func TestCopySparseKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(src, 1<<30); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[int64][]byte{0: []byte("head"), 512 << 20: []byte("middle"), 1<<30 - 4: []byte("tail")}
	for off, b := range marks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := copySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil || fi.Size() != 1<<30 {
		t.Fatalf("copy: %v, %v", fi, err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used > 4<<20 {
		t.Errorf("the copy of a sparse 1 GiB file uses %d bytes on disk", used)
	}
	g, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for off, want := range marks {
		got := make([]byte, len(want))
		if _, err := g.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
			t.Errorf("at %d: %q, %v; want %q", off, got, err, want)
		}
	}
}
