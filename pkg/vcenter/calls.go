package vcenter

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"k8s.io/klog/v2"
)

// Every SOAP call goes through callRT, which
//   - bounds it: a call that gets no answer (a connection silently dropped,
//     a vCenter that hangs) fails after callTimeout instead of waiting for
//     whoever called to give up; the long poll gets its own wait plus a
//     margin;
//   - resends it, with exponential backoff and jitter, when it failed for a
//     passing reason (a lost connection, vCenter's proxy answering 503, CNS
//     busy with another operation) and sending it again can do no harm: a
//     read. A call that changes something (CnsCreateVolume, an attach, …)
//     is never resent here, since the first may have been done; the
//     operation that made it settles that from vCenter's state
//     (volumes.go, snapshots.go) and tries again itself.

const (
	callTimeout   = time.Minute
	pollMargin    = 30 * time.Second
	retryAttempts = 4
	retryBase     = 250 * time.Millisecond
	retryMax      = 4 * time.Second
)

// readOnlyPrefixes name the SOAP methods that only read: safe to send again.
var readOnlyPrefixes = []string{"Retrieve", "Query", "CnsQuery", "WaitForUpdates", "CancelWaitForUpdates",
	"Pbm", "Find", "CurrentTime", "Fetch", "SessionIsActive", "HasPrivilegeOnEntities", "FetchUserPrivilegeOnEntities"}

func readOnly(method string) bool {
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

type callRT struct {
	next    soap.RoundTripper
	maxWait time.Duration // the long poll's wait (Options.WatchMaxWait)
}

func (r *callRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	method := soapMethod(req)
	timeout := callTimeout
	if strings.HasPrefix(method, "WaitForUpdates") {
		timeout = r.maxWait + pollMargin
	}
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.next.RoundTrip(cctx, req, res)
		cancel()
		if err == nil || ctx.Err() != nil || attempt >= retryAttempts || !readOnly(method) || !transient(err) {
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				// Our own bound, not the caller's: vCenter did not answer.
				err = &noAnswer{method: method, after: timeout}
			}
			return err
		}
		d := backoff(attempt)
		klog.V(4).InfoS("vCenter call failed for a passing reason; trying again", "method", method, "attempt", attempt, "in", d, "err", err)
		resetBody(res)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

// backoff is the wait before attempt+1: exponential from retryBase, at
// most retryMax, ±25 % jitter.
func backoff(attempt int) time.Duration {
	return jitter(min(retryBase<<(attempt-1), retryMax))
}

// noAnswer: vCenter did not answer a call within its bound.
type noAnswer struct {
	method string
	after  time.Duration
}

func (e *noAnswer) Error() string {
	return "vCenter did not answer " + e.method + " within " + e.after.String()
}

// transient says whether a call failed for a reason that passes: the
// network, vCenter's proxy (502, 503, 504), our own call bound, CNS busy
// with another operation, another task in progress.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var na *noAnswer
	if errors.As(err, &na) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch httpStatus(err) {
	case 502, 503, 504:
		return true
	}
	if fault, _ := faultOf(err); fault != nil {
		return transientFault(fault)
	}
	return isNetworkError(err)
}

// httpStatus is the HTTP status of a call that got an HTTP answer other
// than a SOAP one (0 when it did not).
func httpStatus(err error) int {
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Err == nil {
		return 0
	}
	msg := ue.Err.Error()
	if len(msg) < 3 {
		return 0
	}
	n, perr := strconv.Atoi(msg[:3])
	if perr != nil || n < 100 || n > 599 {
		return 0
	}
	return n
}

// uncertain says whether a call that changes something may have been done
// although it failed: the answer was lost, not refused.
func uncertain(err error) bool {
	if err == nil || soap.IsSoapFault(err) {
		return false
	}
	if s := httpStatus(err); s != 0 {
		return s == 504 // a gateway that gave up on vCenter, which may have done it
	}
	return true
}

// isTaskGone says whether err is ManagedObjectNotFound for a Task: the
// task is gone (vCenter restarted, or forgot it).
func isTaskGone(err error) bool {
	fault, _ := faultOf(err)
	switch f := fault.(type) {
	case types.ManagedObjectNotFound:
		return f.Obj.Type == "Task"
	case *types.ManagedObjectNotFound:
		return f.Obj.Type == "Task"
	}
	return false
}
