package vcenter

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// writeAt writes data into a volume's data file in the embedded vCenter
// (what a guest writing to the attached disk does).
func writeAt(t *testing.T, e *testEnv, volumeID string, off int64, data []byte) {
	t.Helper()
	path, ok := e.sim.VolumeFile(volumeID)
	if !ok {
		t.Fatalf("no data file for volume %s", volumeID)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, e *testEnv, volumeID string, off int64, n int) []byte {
	t.Helper()
	path, ok := e.sim.VolumeFile(volumeID)
	if !ok {
		t.Fatalf("no data file for volume %s", volumeID)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestSnapshotRestoreKeepsThatMomentsData(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	src, err := e.c.CreateVolume(ctx, CreateSpec{Name: "snap-src", CapacityBytes: 64 << 20, DatastoreIDs: ds})
	if err != nil {
		t.Fatal(err)
	}
	first, second := []byte("before the snapshot"), []byte("after the snapshot!")
	writeAt(t, e, src.ID, 1<<20, first)

	mark := e.n.Count()
	snap, err := e.c.CreateSnapshot(ctx, src.ID, "snap-1")
	if err != nil {
		t.Fatal(err)
	}
	// The call, and the shared watch's long poll that brings the task's end.
	budget(t, "CreateSnapshot", e.n.Count()-mark, 3)
	if snap.ID == "" || snap.VolumeID != src.ID || snap.Description != "snap-1" || snap.CreateTime.IsZero() {
		t.Fatalf("snapshot %+v", snap)
	}
	writeAt(t, e, src.ID, 1<<20, second)

	// Listing: by volume, by snapshot, everything; unknown IDs select nothing.
	mark = e.n.Count()
	got, next, err := e.c.Snapshots(ctx, SnapshotFilter{VolumeID: src.ID, SnapshotID: snap.ID}, 0, 0)
	if err != nil || next != 0 || len(got) != 1 || got[0].ID != snap.ID || got[0].SizeBytes != 64<<20 {
		t.Fatalf("Snapshots(one) = %+v, %d, %v", got, next, err)
	}
	// The query task, the long poll, one CnsQueryVolume for the sizes.
	budget(t, "Snapshots", e.n.Count()-mark, 4)
	for _, f := range []SnapshotFilter{{VolumeID: src.ID, SnapshotID: "nope"}, {VolumeID: "no-such-volume"}} {
		if got, _, err := e.c.Snapshots(ctx, f, 0, 0); err != nil || len(got) != 0 {
			t.Errorf("Snapshots(%+v) = %+v, %v; want none", f, got, err)
		}
	}

	// Extend and delete refuse while a snapshot exists, as vSphere does.
	if err := e.c.ExtendVolume(ctx, src.ID, 128<<20); !errors.Is(err, ErrHasSnapshots) {
		t.Errorf("ExtendVolume with a snapshot = %v; want ErrHasSnapshots", err)
	}
	if err := e.c.DeleteVolume(ctx, src.ID); !errors.Is(err, ErrHasSnapshots) {
		t.Errorf("DeleteVolume with a snapshot = %v; want ErrHasSnapshots", err)
	}

	restored, err := e.c.CreateVolume(ctx, CreateSpec{Name: "restored", CapacityBytes: 96 << 20, DatastoreIDs: ds,
		SourceVolumeID: src.ID, SourceSnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	if b := readAt(t, e, restored.ID, 1<<20, len(first)); !bytes.Equal(b, first) {
		t.Errorf("restored volume holds %q; want %q", b, first)
	}
	if fi, err := os.Stat(mustFile(t, e, restored.ID)); err != nil || fi.Size() != 96<<20 {
		t.Errorf("restored data file: %v, %v; want 96 MiB", fi.Size(), err)
	}
	clone, err := e.c.CreateVolume(ctx, CreateSpec{Name: "clone", CapacityBytes: 64 << 20, DatastoreIDs: ds, SourceVolumeID: src.ID})
	if err != nil {
		t.Fatal(err)
	}
	if b := readAt(t, e, clone.ID, 1<<20, len(second)); !bytes.Equal(b, second) {
		t.Errorf("clone holds %q; want %q", b, second)
	}
	if got, _, _ := e.c.Snapshots(ctx, SnapshotFilter{VolumeID: src.ID}, 0, 0); len(got) != 1 {
		t.Errorf("after the clone the source has %d snapshots; want 1 (the clone's own is gone)", len(got))
	}

	if _, err := e.c.CreateVolume(ctx, CreateSpec{Name: "bad", CapacityBytes: 64 << 20, DatastoreIDs: ds,
		SourceVolumeID: src.ID, SourceSnapshotID: "nope"}); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("CreateVolume from an unknown snapshot = %v; want ErrSnapshotNotFound", err)
	}
	if err := e.c.DeleteSnapshot(ctx, src.ID, snap.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteSnapshot(ctx, src.ID, snap.ID); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("second DeleteSnapshot = %v; want ErrSnapshotNotFound", err)
	}
	mark = e.n.Count()
	if err := e.c.ExtendVolume(ctx, src.ID, 128<<20); err != nil {
		t.Fatal(err)
	}
	budget(t, "ExtendVolume", e.n.Count()-mark, 3)
	if fi, err := os.Stat(mustFile(t, e, src.ID)); err != nil || fi.Size() != 128<<20 {
		t.Errorf("extended data file: %v, %v; want 128 MiB", fi.Size(), err)
	}
	if err := e.c.ExtendVolume(ctx, "no-such-volume", 128<<20); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("ExtendVolume(unknown) = %v; want ErrVolumeNotFound", err)
	}
	for _, id := range []string{src.ID, restored.ID, clone.ID} {
		if err := e.c.DeleteVolume(ctx, id); err != nil {
			t.Errorf("DeleteVolume(%s): %v", id, err)
		}
	}
}

func TestSnapshotsPage(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	ds := placeable(t, e.c, "")
	want := map[string]bool{}
	for _, name := range []string{"a", "b"} {
		v, err := e.c.CreateVolume(ctx, CreateSpec{Name: name, CapacityBytes: 16 << 20, DatastoreIDs: ds})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			s, err := e.c.CreateSnapshot(ctx, v.ID, name)
			if err != nil {
				t.Fatal(err)
			}
			want[s.ID] = true
		}
	}
	seen := map[string]bool{}
	var offset int64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, next, err := e.c.Snapshots(ctx, SnapshotFilter{}, offset, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			if seen[s.ID] {
				t.Errorf("snapshot %s listed twice", s.ID)
			}
			seen[s.ID] = true
		}
		if next == 0 {
			break
		}
		offset = next
	}
	if len(seen) != len(want) {
		t.Errorf("paged through %d snapshots; want %d", len(seen), len(want))
	}
}

// budget fails when an operation made more HTTP requests than max.
func budget(t *testing.T, op string, n, max int64) {
	t.Helper()
	t.Logf("%s: %d HTTP requests", op, n)
	if n > max {
		t.Errorf("%s made %d HTTP requests; want at most %d", op, n, max)
	}
}

func mustFile(t *testing.T, e *testEnv, id string) string {
	t.Helper()
	p, ok := e.sim.VolumeFile(id)
	if !ok {
		t.Fatalf("no data file for volume %s", id)
	}
	return p
}
