package driver

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
)

// inFlight remembers the keys (volume names, volume IDs, volume+node pairs)
// whose operation is running, so that a duplicate request answers Aborted
// instead of racing the first one.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newInFlight() *inFlight { return &inFlight{keys: map[string]struct{}{}} }

// acquireAll marks every key busy, or none (Aborted).
func (f *inFlight) acquireAll(keys ...string) (release func(), err error) {
	var releases []func()
	releaseAll := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for _, k := range keys {
		r, err := f.acquire(k)
		if err != nil {
			releaseAll()
			return nil, err
		}
		releases = append(releases, r)
	}
	return releaseAll, nil
}

// acquire marks key busy. It returns a release function, or an Aborted
// error when key is already busy.
func (f *inFlight) acquire(key string) (release func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.keys[key]; busy {
		return nil, status.Errorf(codes.Aborted, "an operation on %s is already in progress", key)
	}
	f.keys[key] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.keys, key)
		f.mu.Unlock()
	}, nil
}

// The in-flight keys of the controller, one function each so that the
// operations that must not overlap name the same key:
//   - volumeKey: what changes the volume itself (publish and unpublish of
//     a block volume: one node VM at a time; delete; expand; modify);
//   - publishKey: a file volume's publish and unpublish, per node: a
//     ReadWriteMany volume goes to several nodes at once;
//   - snapshotsKey: what creates or deletes the volume's snapshots, and
//     delete and expand, which must not race them; publishing goes on.
func volumeKey(id string) string         { return "volume " + id }
func publishKey(id, node string) string  { return "volume " + id + " on node " + node }
func snapshotsKey(id string) string      { return "snapshots of volume " + id }
func snapshotNameKey(name string) string { return "snapshot name " + name }
func volumeNameKey(name string) string   { return "volume name " + name }

// detachedTimeout bounds an operation that keeps going after its caller
// gave up (finish).
const detachedTimeout = 10 * time.Minute

// finish runs op to its end even when the caller gives up (a sidecar's
// timeout is often shorter than a vCenter task), holding the in-flight
// guard (release) until then: a retry meanwhile is Aborted, and the retry
// after finds what op made (by name) instead of making it again. The
// caller gets op's outcome, or its own context's error.
func finish[T any](ctx context.Context, release func(), what string, op func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The guard is released before the answer goes out: the caller's
		// next call on the same key, made as soon as it has its answer,
		// must not find it still held (Aborted).
		// A panic in op answers the caller Internal (codeFor) and the
		// guard is released: the process goes on.
		var v T
		err := panics.Call(what, func() error {
			defer release()
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
			defer cancel()
			var err error
			v, err = op(bg)
			return err
		})
		done <- result{v, toStatus(err)}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		klog.InfoS("Caller gone; the operation goes on and a retry will find what it made", "operation", what)
		var zero T
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}
