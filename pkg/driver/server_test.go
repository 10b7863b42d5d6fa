package driver

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPanicBecomesInternal (issue 11, finding 9): a handler that panics
// answers Internal; the process goes on serving.
func TestPanicBecomesInternal(t *testing.T) {
	intercept := logCalls(nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/CreateVolume"}
	_, err := intercept(context.Background(), "req", info, func(context.Context, any) (any, error) {
		var m map[string]int
		m["boom"]++ // a nil map: a bug
		return nil, nil
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	resp, err := intercept(context.Background(), "req", info, func(context.Context, any) (any, error) { return "fine", nil })
	if err != nil || resp != "fine" {
		t.Fatalf("the next call: %v %v", resp, err)
	}
}
