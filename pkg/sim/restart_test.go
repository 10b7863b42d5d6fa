package sim

import (
	"context"
	"testing"
)

// TestStartTwiceOnOneDir: a kept state dir must not stop the next Start.
func TestStartTwiceOnOneDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatalf("second Start on the same dir: %v", err)
	}
	_ = s2.Close()
}
