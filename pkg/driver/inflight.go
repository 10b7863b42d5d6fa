package driver

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inFlight remembers the keys (volume names, volume IDs, volume+node pairs)
// whose operation is running, so that a duplicate request answers Aborted
// instead of racing the first one.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newInFlight() *inFlight { return &inFlight{keys: map[string]struct{}{}} }

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
