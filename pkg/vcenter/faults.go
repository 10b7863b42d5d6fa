package vcenter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"reflect"
	"strings"
	"syscall"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// faultError is a vCenter fault that came back in a task's info or in a CNS
// per-volume result rather than as a SOAP fault.
type faultError struct {
	fault any // a vim or CNS fault, value or pointer
	msg   string
}

func (e *faultError) Error() string { return e.msg }

// localizedError makes an error of a LocalizedMethodFault; nil for nil.
func localizedError(f *types.LocalizedMethodFault) error {
	if f == nil {
		return nil
	}
	msg := f.LocalizedMessage
	if f.Fault != nil {
		msg = joinMessages(msg, faultText(f.Fault))
	}
	if msg == "" {
		msg = faultTypeName(f.Fault)
	}
	return &faultError{fault: f.Fault, msg: msg}
}

// mapFault is the one place where vCenter faults become the package's
// sentinel errors. notFound is the sentinel for "not found" in the caller's
// context (ErrVolumeNotFound, ErrNodeNotFound) or nil when not-found faults
// have no sentinel there. vCenter's message stays in the error text.
func mapFault(err error, notFound error) error {
	if err == nil || isSentinel(err) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}

	fault, msg := faultOf(err)
	if fault == nil {
		var na *noAnswer
		if isNetworkError(err) || errors.As(err, &na) || httpStatus(err) >= 500 {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return err
	}
	if s := classify(fault, msg, notFound); s != nil {
		switch {
		case errors.Is(s, ErrPermissionDenied):
			msg += permissionDetail(fault)
		case errors.Is(s, ErrNotSupported):
			msg += methodDetail(fault)
		}
		return &mappedFault{sentinel: s, name: faultTypeName(fault), msg: msg}
	}
	return &mappedFault{name: faultTypeName(fault), msg: msg}
}

// mappedFault is what mapFault makes of a vCenter fault: its sentinel (nil
// when none fits) and vCenter's message, and the fault's type name for
// FaultType.
type mappedFault struct {
	sentinel error
	name     string
	msg      string
}

func (e *mappedFault) Error() string {
	if e.sentinel == nil {
		return "vCenter: " + e.msg
	}
	return e.sentinel.Error() + ": " + e.msg
}

func (e *mappedFault) Unwrap() error { return e.sentinel }

// FaultType is the type name of the vCenter fault that err carries
// ("NotFound", "CnsFault", "InvalidHostState", …: the vim or CNS fault a
// SOAP call, a task or a volume's result in a task answered), "" when err
// carries none (no error, or a network, timeout or driver error).
func FaultType(err error) string {
	var f *mappedFault
	if errors.As(err, &f) {
		return f.name
	}
	return ""
}

// errAlreadyRegistered: the disk CnsCreateVolume was to register already is
// a CNS volume.
var errAlreadyRegistered = errors.New("already registered as a CNS volume")

// classify picks the sentinel for a fault, by its type (and the types it
// extends) first and, for the few CNS faults that have no type of their
// own, by a precise phrase of CNS's; nil when none fits. "Not found" is
// believed only from the types that say a volume (or, for notFound's
// callers, their object) is missing, never from text: callers that answer
// "already gone" confirm it with vCenter's state (volumes.go).
func classify(fault any, msg string, notFound error) error {
	names := faultTypeChain(fault)
	has := func(n ...string) bool {
		for _, want := range n {
			for _, got := range names {
				if got == want {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("NotAuthenticated", "InvalidLogin"):
		return ErrNotAuthenticated
	case has("CnsSnapshotNotFoundFault"):
		return ErrSnapshotNotFound
	case has("ManagedObjectNotFound"):
		switch managedObjectNotFound(fault) {
		case "VirtualMachine":
			return ErrNodeNotFound
		case "Task":
			return errTaskLost
		}
		return nil
	case has("CnsVolumeNotFoundFault"):
		return ErrVolumeNotFound
	case has("CnsAlreadyRegisteredFault"):
		return errAlreadyRegistered
	case has("NotFound"):
		return notFound
	case has("ResourceInUse"):
		return ErrVolumeInUse
	case has("InsufficientStorageSpace", "NoDiskSpace"):
		return ErrInsufficientSpace
	case has("InvalidArgument"):
		return ErrInvalidArgument
	case has("NoPermission"): // after NotAuthenticated, which extends it
		return ErrPermissionDenied
	case has("MethodNotFound"):
		return ErrNotSupported
	case transientFault(fault):
		return ErrUnavailable
	}
	text := strings.ToLower(msg)
	switch {
	case strings.Contains(text, "the volume has snapshots"), strings.Contains(text, "has snapshots; delete them"):
		return ErrHasSnapshots
	case strings.Contains(text, "missing scsi controller"), strings.Contains(text, "scsi controller reached limit"):
		// CNS: "Failed to attach disk because missing SCSI controller" when
		// the VM's 4 controllers are full.
		return ErrNodeFull
	case strings.Contains(text, "insufficient") && strings.Contains(text, "space"):
		return ErrInsufficientSpace
	case strings.Contains(text, "not compatible with storage policy"), strings.Contains(text, "is not compatible"):
		// CNS's policy reconfiguration refused by the volume's datastore.
		return ErrPolicyIncompatible
	case strings.Contains(text, "already registered"):
		return errAlreadyRegistered
	}
	return nil
}

// transientFault: faults vCenter answers when it is busy, not when the
// call is wrong.
func transientFault(fault any) bool {
	for _, n := range faultTypeChain(fault) {
		switch n {
		case "TaskInProgress", "ResourceNotAvailable", "HostCommunication", "RequestCanceled",
			// The object's state or its host's, for now: a host not
			// connected, a VM being migrated, a call that timed out.
			"InvalidState", "HostNotConnected", "HostNotReachable", "Timedout":
			return true
		}
	}
	if cf, ok := asCnsFault(fault); ok {
		// CNS's plain CnsFault says "try again" when another operation on
		// the same object is in progress; its subtypes say what is wrong.
		_, isPlain := fault.(cnstypes.CnsFault)
		_, isPtr := fault.(*cnstypes.CnsFault)
		return (isPlain || isPtr) && busyText(cf.Reason)
	}
	return false
}

// permissionDetail names what NoPermission says is missing: the privilege
// (or privileges) and the object, for the admin to grant.
func permissionDetail(fault any) string {
	var np *types.NoPermission
	switch f := fault.(type) {
	case types.NoPermission:
		np = &f
	case *types.NoPermission:
		np = f
	default:
		return ""
	}
	privs := []string{}
	if np.PrivilegeId != "" {
		privs = append(privs, np.PrivilegeId)
	}
	for _, m := range np.MissingPrivileges {
		privs = append(privs, m.PrivilegeIds...)
	}
	obj := "an object"
	if np.Object != nil {
		obj = np.Object.Type + ":" + np.Object.Value
	}
	return fmt.Sprintf(" (the vCenter user needs privilege %s on %s; grant it to the role of the user in csi-vsphere.conf)", strings.Join(privs, ", "), obj)
}

func busyText(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "in progress") || strings.Contains(s, "try again") || strings.Contains(s, "retry later")
}

// faultOf finds the vCenter fault in err and its message.
func faultOf(err error) (any, string) {
	var fe *faultError
	if errors.As(err, &fe) {
		return fe.fault, fe.msg
	}
	if soap.IsSoapFault(err) {
		sf := soap.ToSoapFault(err)
		f := sf.VimFault()
		return f, joinMessages(sf.String, faultText(f))
	}
	if soap.IsVimFault(err) {
		f := soap.ToVimFault(err)
		return f, joinMessages(err.Error(), faultText(f))
	}
	return nil, ""
}

// faultText is what a fault says beyond its type: a CNS fault's reason and
// the fault messages.
func faultText(f any) string {
	var parts []string
	if cf, ok := asCnsFault(f); ok && cf.Reason != "" {
		parts = append(parts, cf.Reason)
	}
	if mf, ok := f.(types.BaseMethodFault); ok && mf.GetMethodFault() != nil {
		for _, m := range mf.GetMethodFault().FaultMessage {
			if m.Message != "" {
				parts = append(parts, m.Message)
			}
		}
	}
	if len(parts) == 0 {
		return faultTypeName(f)
	}
	return joinMessages(parts...)
}

func asCnsFault(f any) (*cnstypes.CnsFault, bool) {
	v := reflect.ValueOf(f)
	for v.IsValid() && v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, false
		}
		v = v.Elem()
	}
	for v.IsValid() && v.Kind() == reflect.Struct {
		if v.Type() == reflect.TypeOf(cnstypes.CnsFault{}) {
			cf := v.Interface().(cnstypes.CnsFault)
			return &cf, true
		}
		if v.NumField() == 0 || !v.Type().Field(0).Anonymous {
			break
		}
		v = v.Field(0)
	}
	return nil, false
}

func managedObjectNotFound(f any) string {
	switch f := f.(type) {
	case types.ManagedObjectNotFound:
		return f.Obj.Type
	case *types.ManagedObjectNotFound:
		return f.Obj.Type
	}
	return ""
}

// faultTypeChain lists a fault's type name and the names of the types it
// embeds first (its vmodl base types): CnsVolumeNotFoundFault, CnsFault,
// MethodFault.
func faultTypeChain(f any) []string {
	t := reflect.TypeOf(f)
	var names []string
	for t != nil {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			break
		}
		names = append(names, t.Name())
		if t.NumField() == 0 || !t.Field(0).Anonymous {
			break
		}
		t = t.Field(0).Type
	}
	return names
}

func faultTypeName(f any) string {
	if names := faultTypeChain(f); len(names) > 0 {
		return names[0]
	}
	return "unknown fault"
}

// joinMessages joins the non-empty messages with ": ", leaving out any that
// an earlier one already says.
func joinMessages(msgs ...string) string {
	var out []string
	for _, m := range msgs {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		dup := false
		for i, o := range out {
			if strings.Contains(o, m) {
				dup = true
				break
			}
			if strings.Contains(m, o) {
				out[i], dup = m, true
				break
			}
		}
		if !dup {
			out = append(out, m)
		}
	}
	return strings.Join(out, ": ")
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrVolumeNotFound, ErrNodeNotFound, ErrPolicyNotFound, ErrVolumeInUse,
		ErrInsufficientSpace, ErrInvalidArgument, ErrNotAuthenticated, ErrUnavailable, ErrPolicyIncompatible,
		ErrSnapshotNotFound, ErrHasSnapshots, ErrNodeFull, ErrPermissionDenied, ErrNotSupported,
		errTaskLost, errUncertain, errAlreadyRegistered} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func isNetworkError(err error) bool {
	var ue *url.Error
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &oe) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
