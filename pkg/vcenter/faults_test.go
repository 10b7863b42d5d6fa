package vcenter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// soapFault builds the error a SOAP call returns for a fault (as decoded:
// a value type in Detail).
func soapFault(msg string, fault types.AnyType) error {
	f := &soap.Fault{String: msg}
	f.Detail.Fault = fault
	return soap.WrapSoapFault(f)
}

func lmf(fault types.BaseMethodFault, msg string) error {
	return localizedError(&types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg})
}

func TestMapFault(t *testing.T) {
	vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-42"}
	ds := types.ManagedObjectReference{Type: "Datastore", Value: "datastore-7"}
	tests := []struct {
		name     string
		err      error
		notFound error
		want     error  // nil: no sentinel
		text     string // must be in the message
	}{
		{"not authenticated", soapFault("The session is not authenticated.", types.NotAuthenticated{}), nil, ErrNotAuthenticated, "not authenticated"},
		{"invalid login", soapFault("Cannot complete login", types.InvalidLogin{}), nil, ErrNotAuthenticated, "Cannot complete login"},
		{"resource in use", lmf(&types.ResourceInUse{Name: "vol"}, "volume vol is attached to VM node-1"), ErrVolumeNotFound, ErrVolumeInUse, "node-1"},
		// Text decides neither "in use" nor "not found" (issue 11, finding 4).
		{"attached text is not in use", lmf(&cnstypes.CnsFault{Reason: "The volume is attached to a VM"}, ""), ErrVolumeNotFound, nil, "attached to a VM"},
		{"not found text is not gone", lmf(&cnstypes.CnsFault{Reason: "Failed: datastore not found"}, ""), ErrVolumeNotFound, nil, "datastore not found"},
		{"file not found is not gone", lmf(&types.FileNotFound{}, "File [ds] fcd/x.vmdk was not found"), ErrVolumeNotFound, nil, "was not found"},
		{"not attached is not in use", lmf(&cnstypes.CnsFault{Reason: "volume v is not attached to VM x"}, ""), ErrVolumeNotFound, nil, "not attached"},
		{"cns volume not found", lmf(&cnstypes.CnsVolumeNotFoundFault{CnsFault: cnstypes.CnsFault{Reason: "volume v not found"}}, ""), ErrVolumeNotFound, ErrVolumeNotFound, "volume v not found"},
		{"vim not found", lmf(&types.NotFound{}, "The object or item referred to could not be found."), ErrVolumeNotFound, ErrVolumeNotFound, "could not be found"},
		{"soap not found", soapFault("not found", types.NotFound{}), ErrVolumeNotFound, ErrVolumeNotFound, "not found"},
		{"not found, node context", lmf(&types.NotFound{}, "gone"), ErrNodeNotFound, ErrNodeNotFound, "gone"},
		{"MONF of a VM", soapFault("managed object not found: vm-42", types.ManagedObjectNotFound{Obj: vm}), ErrVolumeNotFound, ErrNodeNotFound, "vm-42"},
		{"MONF of a VM in a task", lmf(&types.ManagedObjectNotFound{Obj: vm}, "virtual machine vm-42 not found"), ErrVolumeNotFound, ErrNodeNotFound, "vm-42"},
		{"MONF of a datastore is not a volume gone", lmf(&types.ManagedObjectNotFound{Obj: ds}, "datastore gone"), ErrVolumeNotFound, nil, "datastore gone"},
		{"MONF of a task: lost, try again", soapFault("", types.ManagedObjectNotFound{Obj: types.ManagedObjectReference{Type: "Task", Value: "task-9"}}), ErrVolumeNotFound, ErrUnavailable, "lost the task"},
		{"CNS busy", lmf(&cnstypes.CnsFault{Reason: "CNS: Failed to run the operation: another operation is in progress. Retry later."}, ""), ErrVolumeNotFound, ErrUnavailable, "in progress"},
		{"task in progress", soapFault("", types.TaskInProgress{}), ErrVolumeNotFound, ErrUnavailable, "TaskInProgress"},
		{"HTTP 503", &url.Error{Op: "POST", URL: "/sdk", Err: errors.New("503 Service Unavailable")}, nil, ErrUnavailable, "503"},
		{"MONF without sentinel", soapFault("managed object not found", types.ManagedObjectNotFound{Obj: ds}), nil, nil, "managed object not found"},
		{"insufficient storage", lmf(&types.InsufficientStorageSpace{}, "Insufficient disk space on datastore"), ErrVolumeNotFound, ErrInsufficientSpace, "Insufficient disk space"},
		{"no disk space", lmf(&types.NoDiskSpace{Datastore: "ds1"}, "no space left"), nil, ErrInsufficientSpace, "no space left"},
		{"cns insufficient", lmf(&cnstypes.CnsFault{Reason: "Failed to create volume: INSUFFICIENT space on datastore"}, ""), ErrVolumeNotFound, ErrInsufficientSpace, "INSUFFICIENT"},
		{"invalid argument", soapFault("A specified parameter was not correct: capacity", types.InvalidArgument{InvalidProperty: "capacity"}), nil, ErrInvalidArgument, "capacity"},
		{"invalid argument in task", lmf(&types.InvalidArgument{InvalidProperty: "profile"}, "bad profile"), nil, ErrInvalidArgument, "bad profile"},
		{"other fault keeps text", lmf(&types.SystemError{Reason: "boom"}, "A general system error occurred: boom"), ErrVolumeNotFound, nil, "boom"},
		{"url error", &url.Error{Op: "Post", URL: "https://vc/sdk", Err: syscall.ECONNREFUSED}, nil, ErrUnavailable, "connection refused"},
		{"net op error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route to host")}, nil, ErrUnavailable, "no route"},
		{"eof", fmt.Errorf("reading response: %w", io.ErrUnexpectedEOF), nil, ErrUnavailable, "unexpected EOF"},
		{"context deadline stays", fmt.Errorf("waiting: %w", context.DeadlineExceeded), nil, nil, "deadline"},
		{"sentinel passes", fmt.Errorf("x: %w", ErrVolumeInUse), nil, ErrVolumeInUse, "x"},
		{"node VM full", lmf(&cnstypes.CnsFault{Reason: "CNS: Failed to attach disk because missing SCSI controller"}, ""), ErrVolumeNotFound, ErrNodeFull, "missing SCSI controller"},
		{"plain error", errors.New("something odd"), nil, nil, "something odd"},
		{"no permission names privilege and object", soapFault("Permission to perform this operation was denied.",
			types.NoPermission{Object: &ds, PrivilegeId: "Datastore.FileManagement"}), ErrVolumeNotFound, ErrPermissionDenied, "Datastore.FileManagement on Datastore:datastore-7"},
		{"no permission in a task, missing privileges", lmf(&types.NoPermission{Object: &vm, MissingPrivileges: []types.NoPermissionEntityPrivileges{{Entity: vm, PrivilegeIds: []string{"VirtualMachine.Config.AddExistingDisk"}}}},
			"Permission to perform this operation was denied."), ErrVolumeNotFound, ErrPermissionDenied, "VirtualMachine.Config.AddExistingDisk"},
		{"invalid state is transient", soapFault("The operation is not allowed in the current state.", types.InvalidState{}), ErrVolumeNotFound, ErrUnavailable, "current state"},
		{"host not connected is transient", lmf(&types.HostNotConnected{}, "The host is not connected."), ErrVolumeNotFound, ErrUnavailable, "not connected"},
		{"timed out is transient", lmf(&types.Timedout{}, "Operation timed out."), nil, ErrUnavailable, "timed out"},
		{"method not found names the release that has it", soapFault("Method CnsCreateSnapshots not found.",
			types.MethodNotFound{Receiver: types.ManagedObjectReference{Type: "CnsVolumeManager", Value: "cns-volume-manager"}, Method: "CnsCreateSnapshots"}),
			ErrVolumeNotFound, ErrNotSupported, "no CnsCreateSnapshots: it comes with vSphere 7.0 Update 3"},
		{"method not found, a method of a later release", soapFault("Method CnsUnregisterVolume not found.",
			types.MethodNotFound{Method: "CnsUnregisterVolume"}), nil, ErrNotSupported, "it comes with a later vSphere release"},
	}
	sentinels := []error{ErrVolumeNotFound, ErrNodeNotFound, ErrPolicyNotFound, ErrVolumeInUse,
		ErrInsufficientSpace, ErrInvalidArgument, ErrNotAuthenticated, ErrUnavailable, ErrNodeFull, ErrPermissionDenied, ErrNotSupported}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapFault(tt.err, tt.notFound)
			if got == nil {
				t.Fatal("nil error")
			}
			for _, s := range sentinels {
				if is := errors.Is(got, s); is != (s == tt.want) {
					t.Errorf("mapFault(%v) = %q: errors.Is(%v) = %v", tt.err, got, s, is)
				}
			}
			if !strings.Contains(got.Error(), tt.text) {
				t.Errorf("mapFault(%v) = %q; want it to say %q", tt.err, got, tt.text)
			}
			if tt.want == nil && errors.Is(tt.err, context.DeadlineExceeded) && !errors.Is(got, context.DeadlineExceeded) {
				t.Errorf("context error lost: %v", got)
			}
		})
	}
	if mapFault(nil, ErrVolumeNotFound) != nil {
		t.Error("mapFault(nil) != nil")
	}
}

func TestLocalizedErrorDedupesMessages(t *testing.T) {
	msg := "Insufficient disk space on datastore 'ds': 2 bytes requested, 1 bytes free"
	f := &cnstypes.CnsFault{Reason: msg}
	f.FaultMessage = []types.LocalizableMessage{{Message: msg}}
	err := localizedError(&types.LocalizedMethodFault{Fault: f, LocalizedMessage: msg})
	if err.Error() != msg {
		t.Errorf("message %q; want %q once", err, msg)
	}
}

func TestFaultName(t *testing.T) {
	if got := faultName(soapFault("x", types.NotAuthenticated{})); got != "NotAuthenticated" {
		t.Errorf("faultName = %q", got)
	}
	if got := faultName(nil); got != "" {
		t.Errorf("faultName(nil) = %q", got)
	}
	if got := faultName(&url.Error{Op: "Post", Err: io.EOF}); got != "NetworkError" {
		t.Errorf("faultName(url.Error) = %q", got)
	}
}

func TestNormalizeUUIDs(t *testing.T) {
	for in, want := range map[string]string{
		"4261C914-CE7C-56F2-A9E2-7D27C27B3AB3":                   "4261c914-ce7c-56f2-a9e2-7d27c27b3ab3",
		"4261c914ce7c56f2a9e27d27c27b3ab3":                       "4261c914-ce7c-56f2-a9e2-7d27c27b3ab3",
		"VMware-42 61 c9 14 ce 7c 56 f2-a9 e2 7d 27 c2 7b 3a b3": "4261c914-ce7c-56f2-a9e2-7d27c27b3ab3",
		"not-a-uuid": "",
		"":           "",
	} {
		if got := normalizeVMUUID(in); got != want {
			t.Errorf("normalizeVMUUID(%q) = %q; want %q", in, got, want)
		}
	}
	if got := normalizeDiskUUID("6000C298-595b-f457-5739-e9105b2c0c2d"); got != "6000c298595bf4575739e9105b2c0c2d" {
		t.Errorf("normalizeDiskUUID = %q", got)
	}
}

func TestPageOf(t *testing.T) {
	vols := func(n int) []cnstypes.CnsVolume {
		var out []cnstypes.CnsVolume
		for i := range n {
			out = append(out, cnstypes.CnsVolume{VolumeId: cnstypes.CnsVolumeId{Id: fmt.Sprintf("v%02d", i)}})
		}
		return out
	}
	tests := []struct {
		name          string
		res           cnstypes.CnsQueryResult
		offset, limit int64
		wantN         int
		wantNext      int64
	}{
		{"server pages, more", cnstypes.CnsQueryResult{Volumes: vols(5), Cursor: cnstypes.CnsCursor{Offset: 5, Limit: 5, TotalRecords: 12}}, 0, 5, 5, 5},
		{"server pages, last", cnstypes.CnsQueryResult{Volumes: vols(2), Cursor: cnstypes.CnsCursor{Offset: 12, Limit: 5, TotalRecords: 12}}, 10, 5, 2, 0},
		{"server pages, no total, full page", cnstypes.CnsQueryResult{Volumes: vols(5), Cursor: cnstypes.CnsCursor{Offset: 5}}, 0, 5, 5, 5},
		{"empty", cnstypes.CnsQueryResult{}, 0, 5, 0, 0},
		{"ignored cursor, first page", cnstypes.CnsQueryResult{Volumes: vols(12)}, 0, 5, 5, 5},
		{"ignored cursor, last page", cnstypes.CnsQueryResult{Volumes: vols(12)}, 10, 5, 2, 0},
		{"ignored cursor, past the end", cnstypes.CnsQueryResult{Volumes: vols(3)}, 10, 5, 0, 0},
		{"all fit", cnstypes.CnsQueryResult{Volumes: vols(3)}, 0, 5, 3, 0},
	}
	for _, tt := range tests {
		res := tt.res
		page, next := cnsPage(&res, tt.offset, tt.limit)
		if len(page) != tt.wantN || next != tt.wantNext {
			t.Errorf("%s: %d volumes, next %d; want %d, %d", tt.name, len(page), next, tt.wantN, tt.wantNext)
		}
	}
}

// TestFaultType: the vCenter fault's type name survives mapFault and any
// wrapping, for the upstream metric's faulttype; errors without a vCenter
// fault have none.
func TestFaultType(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{mapFault(soapFault("not found", types.NotFound{}), ErrVolumeNotFound), "NotFound"},
		{mapFault(lmf(&types.ResourceInUse{Name: "vol"}, "in use"), ErrVolumeNotFound), "ResourceInUse"},
		{mapFault(lmf(&cnstypes.CnsFault{Reason: "something else"}, ""), ErrVolumeNotFound), "CnsFault"},
		{fmt.Errorf("attach: %w", mapFault(soapFault("", types.HostNotConnected{}), nil)), "HostNotConnected"},
		{mapFault(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, nil), ""},
		{ErrVolumeNotFound, ""},
		{nil, ""},
	} {
		if got := FaultType(c.err); got != c.want {
			t.Errorf("FaultType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
