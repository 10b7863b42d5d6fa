package driver

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// TestFinishSurvivesAPanic: op runs on a goroutine of its own, which the
// interceptor's recover does not reach. A panic there answers the caller
// Internal, releases the guard and leaves the process running, also when
// the caller had already gone.
func TestFinishSurvivesAPanic(t *testing.T) {
	t.Parallel()
	f := newInFlight()
	release, err := f.acquire("volume name pvc-1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = finish(context.Background(), release, "CreateVolume pvc-1", func(context.Context) (int, error) {
		var m map[string]int
		m["boom"]++ // a bug
		return 0, nil
	})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "CreateVolume pvc-1") {
		t.Fatalf("err = %v, want Internal naming the operation", err)
	}
	if _, err := f.acquire("volume name pvc-1"); err != nil {
		t.Fatalf("guard still held after the panic: %v", err)
	}

	// The caller gone first: nobody reads the outcome; the panic must
	// still be recovered (an unrecovered one would end this test binary).
	release, err = f.acquire("volume name pvc-2")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	panicked := make(chan struct{})
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	_, err = finish(ctx, release, "CreateVolume pvc-2", func(context.Context) (int, error) {
		<-ctx.Done()
		close(panicked)
		panic("after the caller left")
	})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	<-panicked
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := f.acquire("volume name pvc-2")
		if err == nil {
			r()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("guard never released after the panic")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
