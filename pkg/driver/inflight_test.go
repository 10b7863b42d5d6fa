package driver

import (
	"context"
	"testing"
)

// TestFinishReleasesBeforeAnswering: a caller that retries the same key as
// soon as it has its answer is never Aborted by the guard of the call that
// answered (the snapshot limit test met it: CreateSnapshot, then at once
// another on the same volume).
func TestFinishReleasesBeforeAnswering(t *testing.T) {
	t.Parallel()
	f := newInFlight()
	for i := range 2000 {
		release, err := f.acquire("volume v")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if _, err := finish(context.Background(), release, "test", func(context.Context) (int, error) { return i, nil }); err != nil {
			t.Fatal(err)
		}
	}
}
