package vcenter

import (
	"context"
	"errors"
)

// Reason is the kind of failure err is, in words that name no host, user,
// object or vCenter message ("vCenter unavailable", "not authenticated to
// vCenter"): what an unauthenticated endpoint such as /readyz may say.
func Reason(err error) string {
	for _, s := range []error{ErrNotAuthenticated, ErrPermissionDenied, ErrUnavailable, ErrVolumeNotFound,
		ErrNodeNotFound, ErrPolicyNotFound, ErrVolumeInUse, ErrInsufficientSpace, ErrNodeFull, ErrInvalidArgument,
		ErrPolicyIncompatible, ErrSnapshotNotFound, ErrHasSnapshots} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	switch {
	case errors.Is(err, errClosed):
		return "client closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "unexpected error"
}
