package panics

import (
	"errors"
	"strings"
	"testing"
)

func TestCallTurnsAPanicIntoAnError(t *testing.T) {
	err := Call("the batch", func() error { var m map[string]int; m["x"]++; return nil })
	if !errors.Is(err, ErrPanic) {
		t.Fatalf("err = %v, want ErrPanic", err)
	}
	if !strings.Contains(err.Error(), "the batch") || !strings.Contains(err.Error(), "nil map") {
		t.Errorf("err = %q, want what and the panic's value", err)
	}
	want := errors.New("plain")
	if err := Call("x", func() error { return want }); err != want {
		t.Errorf("err = %v, want fn's own error", err)
	}
}
