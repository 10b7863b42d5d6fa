package driver

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("volume 1: %w", vcenter.ErrVolumeNotFound), codes.NotFound},
		{fmt.Errorf("vm: %w", vcenter.ErrNodeNotFound), codes.NotFound},
		{vcenter.ErrPolicyNotFound, codes.InvalidArgument},
		{vcenter.ErrVolumeInUse, codes.FailedPrecondition},
		{vcenter.ErrInsufficientSpace, codes.ResourceExhausted},
		{vcenter.ErrNotAuthenticated, codes.Unavailable},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{status.Error(codes.Aborted, "busy"), codes.Aborted},
		{errors.New("surprise"), codes.Internal},
	} {
		if got := status.Code(toStatus(tc.err)); got != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, got, tc.code)
		}
	}
	if toStatus(nil) != nil {
		t.Error("nil error must stay nil")
	}
}

func TestInFlight(t *testing.T) {
	t.Parallel()
	f := newInFlight()
	release, err := f.acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.acquire("a"); status.Code(err) != codes.Aborted {
		t.Fatalf("duplicate: %v, want Aborted", err)
	}
	if r, err := f.acquire("b"); err != nil {
		t.Fatalf("other key: %v", err)
	} else {
		r()
	}
	release()
	if _, err := f.acquire("a"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
