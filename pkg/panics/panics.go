// Package panics keeps a bug in a background goroutine from killing the
// process. The gRPC interceptor recovers the handlers' panics; the work the
// handlers hand to goroutines of their own (an operation that outlives its
// caller, a batch of attaches, the inventory watch, the syncer) recovers
// here, turns the panic into an error for whoever waits for that work, and
// logs the stack once.
package panics

import (
	"errors"
	"fmt"
	"runtime/debug"

	"k8s.io/klog/v2"
)

// ErrPanic is what a recovered panic becomes: a bug of the driver, logged
// with its stack. Callers answer it as an internal error; loops go on.
var ErrPanic = errors.New("internal error (a bug of the driver, logged with its stack)")

// Call runs fn and returns its error, or, when fn panics, an error wrapping
// ErrPanic that names what and the panic's value, after logging the stack.
// Locks fn holds must be released by defer, as everywhere in the driver.
func Call(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: %v", what, ErrPanic, r)
			klog.ErrorS(err, "Recovered a panic: a bug; please report it with this log", "work", what, "stack", string(debug.Stack()))
		}
	}()
	return fn()
}
