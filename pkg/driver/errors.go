package driver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/panics"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// toStatus turns an error from the layers below into a gRPC status error.
// It is the one place where the sentinel errors of pkg/vcenter and pkg/node
// become gRPC codes;
// Internal is the last resort. An error that already is a status passes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return &statusError{st: status.New(codeFor(err), err.Error()), err: err}
}

// statusError is a gRPC status that keeps the error it was made of, so
// that the interceptor can tell which vCenter fault (vcenter.FaultType)
// made a call fail.
type statusError struct {
	st  *status.Status
	err error
}

func (e *statusError) Error() string              { return e.st.Err().Error() }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
func (e *statusError) Unwrap() error              { return e.err }

// hint puts what the user can do in front of an error from below. The
// error stays what it was (its sentinel, and so its code in toStatus): the
// handlers add words, never codes.
func hint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

func codeFor(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, vcenter.ErrVolumeNotFound), errors.Is(err, vcenter.ErrNodeNotFound),
		errors.Is(err, vcenter.ErrSnapshotNotFound):
		return codes.NotFound
	case errors.Is(err, vcenter.ErrPolicyNotFound), errors.Is(err, vcenter.ErrInvalidArgument),
		errors.Is(err, vcenter.ErrPolicyIncompatible):
		return codes.InvalidArgument
	case errors.Is(err, vcenter.ErrVolumeInUse), errors.Is(err, vcenter.ErrHasSnapshots), errors.Is(err, vcenter.ErrNotSupported):
		return codes.FailedPrecondition
	case errors.Is(err, vcenter.ErrInsufficientSpace), errors.Is(err, vcenter.ErrNodeFull):
		return codes.ResourceExhausted
	case errors.Is(err, errTooLarge):
		return codes.OutOfRange
	case errors.Is(err, vcenter.ErrNotAuthenticated), errors.Is(err, vcenter.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, vcenter.ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, node.ErrInvalidDiskUUID), errors.Is(err, node.ErrUnsupportedFilesystem), errors.Is(err, node.ErrInvalidNFSExport):
		return codes.InvalidArgument
	case errors.Is(err, node.ErrDeviceNotFound), errors.Is(err, node.ErrPathNotFound):
		return codes.NotFound
	case errors.Is(err, node.ErrFilesystemMismatch), errors.Is(err, node.ErrNotBlank),
		errors.Is(err, node.ErrNotBlockDevice), errors.Is(err, node.ErrResizeNotPermitted):
		return codes.FailedPrecondition
	case errors.Is(err, panics.ErrPanic):
		return codes.Internal // a bug, logged with its stack where it was recovered
	case errors.Is(err, node.ErrNotResponding):
		return codes.Unavailable // a server that may come back: the caller retries
	}
	return codes.Internal
}
