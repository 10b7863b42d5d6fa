package sim

import (
	"hash/fnv"
	"sync"
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

// taskStripes is how many task entities CNS tasks are spread over. The
// simulator holds the task entity's lock while a task runs: one entity
// would run every CNS task one at a time.
const taskStripes = 16

func stripe(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % taskStripes)
}
