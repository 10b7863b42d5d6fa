package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Calls that may block in the kernel for good. A statfs, stat or unmount of
// an NFS share mounted hard (NFSv41Options) whose server stopped answering
// waits in the kernel until the server is back, holding its goroutine and
// an OS thread: nothing in Go can end it. Asked again and again (kubelet
// asks for a volume's stats every minute), such calls would pile up towards
// Go's limit of 10,000 threads, and the whole node plugin would die, block
// volumes too.
//
// So each such call runs on a goroutine of its own, and its caller waits
// for it at most the call wait (Options.CallWait) and its context: a call
// that has not returned by then is left to finish on its own, and its
// caller gets ErrNotResponding. While it has not returned, the same call
// (the same kind on the same path) is not started again: a caller joins
// it, and gets its result, or ErrNotResponding at once if it has already
// waited the call wait. The calls stuck in the kernel are at most one of
// each kind per path, however many times they are asked for.

// DefaultCallWait is how long a caller waits for a filesystem call that
// may block on a server: a healthy NFS server answers a statfs in
// milliseconds, one that is slow but alive in seconds.
const DefaultCallWait = 10 * time.Second

// pathCalls are the calls running now, by kind and path.
type pathCalls struct {
	wait time.Duration

	mu      sync.Mutex
	running map[callKey]*pathCall // guarded by mu
}

type callKey struct{ op, path string }

type pathCall struct {
	since time.Time
	done  chan struct{} // closed when fn has returned; val and err are set
	val   any
	err   error
	left  bool // a caller stopped waiting for it (guarded by pathCalls.mu)
}

func newPathCalls(wait time.Duration) *pathCalls {
	return &pathCalls{wait: wait, running: map[callKey]*pathCall{}}
}

// stuck is how many calls are running now (done or not waited for).
func (c *pathCalls) stuck() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.running)
}

// bounded runs fn, the call op on path, or joins the same call already
// running, and waits for it at most c.wait from its start and until ctx is
// done. A call not back by then is left running, and bounded returns
// ErrNotResponding.
func bounded[T any](ctx context.Context, c *pathCalls, op, path string, fn func() (T, error)) (T, error) {
	key := callKey{op, path}
	c.mu.Lock()
	call, joined := c.running[key]
	if !joined {
		call = &pathCall{since: time.Now(), done: make(chan struct{})}
		c.running[key] = call
		go c.run(key, call, func() (any, error) { return fn() })
	}
	c.mu.Unlock()

	timer := time.NewTimer(time.Until(call.since.Add(c.wait)))
	defer timer.Stop()
	select {
	case <-call.done:
		v, _ := call.val.(T)
		return v, call.err
	case <-timer.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	first := !call.left
	call.left = true
	c.mu.Unlock()
	if first {
		klog.InfoS("A filesystem call does not return (a network filesystem whose server does not answer?): left to finish on its own; the same call is not started again until it has",
			"op", op, "path", path, "waited", roughly(time.Since(call.since)))
	}
	var zero T
	return zero, fmt.Errorf("%w: %s %s has not returned since %s (%s ago)",
		ErrNotResponding, op, path, call.since.Format(time.RFC3339), roughly(time.Since(call.since)))
}

func (c *pathCalls) run(key callKey, call *pathCall, fn func() (any, error)) {
	v, err := fn()
	took := time.Since(call.since)
	c.mu.Lock()
	call.val, call.err = v, err
	delete(c.running, key)
	left := call.left
	c.mu.Unlock()
	close(call.done)
	if left {
		klog.InfoS("A filesystem call that was not waited for has returned", "op", key.op, "path", key.path,
			"after", roughly(took), "err", err)
	}
}

// roughly is d to the second, or to the millisecond below a second.
func roughly(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
