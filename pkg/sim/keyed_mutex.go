package sim

import (
	"sync"
	"sync/atomic"
)

// keyedMutex is a set of mutexes by key, created on demand and dropped
// when nobody holds or waits for them.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refLock
}

type refLock struct {
	sync.Mutex
	refs int
}

// lock locks key and returns the unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refLock{}
	}
	l, ok := k.locks[key]
	if !ok {
		l = &refLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// atomicBool is a flag read and written from several goroutines.
type atomicBool struct{ atomic.Bool }

func (b *atomicBool) get() bool  { return b.Load() }
func (b *atomicBool) set(v bool) { b.Store(v) }
