package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Faults the embedded vCenter can be told to inject, by name. Each is what
// a client sees from a real vCenter in that situation.
const (
	// SOAP faults, answered instead of the call (nothing is done):
	FaultCnsBusy               = "CnsFault"              // CNS refuses: another operation is in progress
	FaultNotAuthenticated      = "NotAuthenticated"      // the session is gone
	FaultTaskInProgress        = "TaskInProgress"        // the object is busy with another task
	FaultInvalidState          = "InvalidState"          // not allowed in the current state
	FaultManagedObjectNotFound = "ManagedObjectNotFound" // the call's object does not exist
	FaultSystemError           = "SystemError"           // vCenter's internal error
	FaultNoPermission          = "NoPermission"          // the user's role lacks a privilege on the call's object
	FaultHostNotConnected      = "HostNotConnected"      // the host of the call's VM or datastore is disconnected from vCenter
	FaultTimedout              = "Timedout"              // vCenter gave up on the operation in time
	FaultMethodNotFound        = "MethodNotFound"        // the release has no such method (an older vCenter: server_release.go)
	// Transport faults, below SOAP:
	FaultHTTP503    = "HTTP503"         // the reverse proxy answers 503 Service Unavailable (vpxd down)
	FaultReset      = "ConnectionReset" // the connection is reset before the call is read: nothing done
	FaultHang       = "Hang"            // no answer for Duration, then the connection is reset: nothing done
	FaultLostReply  = "LostReply"       // the call is done, then the connection is reset before the answer
	faultKindsUsage = "CnsFault, NotAuthenticated, TaskInProgress, InvalidState, ManagedObjectNotFound, SystemError, NoPermission, HostNotConnected, Timedout, MethodNotFound, HTTP503, ConnectionReset, Hang, LostReply"
)

// FaultRule tells the embedded vCenter to fail calls of a SOAP method.
type FaultRule struct {
	// Method is the SOAP method ("CnsCreateVolume", "WaitForUpdatesEx", …),
	// a prefix ending in "*" ("Cns*": every CNS method) or "*" for every
	// method (SOAP calls only; not the vAPI REST calls).
	Method string `json:"method"`
	// Fault is one of the Fault* names.
	Fault string `json:"fault"`
	// Times: fail the next Times matching calls. With Probability, at most
	// Times calls fail (0: no limit).
	Times int `json:"times,omitempty"`
	// Probability: fail each matching call with this probability (0 < p ≤ 1).
	Probability float64 `json:"probability,omitempty"`
	// Duration is how long a Hang lasts.
	Duration time.Duration `json:"duration,omitempty"`
	// InTask: for a CNS method that returns a task, the call is answered
	// and its task runs for its latency, then fails with Fault (a SOAP
	// fault name) and nothing is done.
	InTask bool `json:"inTask,omitempty"`
	// Message replaces the fault's default message.
	Message string `json:"message,omitempty"`
}

// layer says where a fault is made.
type layer int

const (
	layerTransport layer = iota // the HTTP connection (server_transport.go)
	layerSOAP                   // the SOAP dispatch, before the call is run
	layerTask                   // a CNS task, when it would complete
)

func (r FaultRule) layer() layer {
	switch {
	case r.InTask:
		return layerTask
	case r.Fault == FaultHTTP503, r.Fault == FaultReset, r.Fault == FaultHang, r.Fault == FaultLostReply:
		return layerTransport
	}
	return layerSOAP
}

func (r FaultRule) validate() error {
	switch {
	case r.Method == "":
		return fmt.Errorf("fault rule: no method (a SOAP method name or *)")
	case !validMethodName(strings.TrimSuffix(r.Method, "*")) && r.Method != "*":
		return fmt.Errorf("fault rule: %q is not a SOAP method name", r.Method)
	case r.Probability < 0 || r.Probability > 1:
		return fmt.Errorf("fault rule: probability %v is not between 0 and 1", r.Probability)
	case r.Times < 0:
		return fmt.Errorf("fault rule: times %d is negative", r.Times)
	case r.Probability == 0 && r.Times == 0:
		return fmt.Errorf("fault rule: give times (the next N calls) or a probability")
	case r.Fault == FaultHang && r.Duration <= 0:
		return fmt.Errorf("fault rule: a Hang needs a duration")
	}
	switch r.Fault {
	case FaultCnsBusy, FaultNotAuthenticated, FaultTaskInProgress, FaultInvalidState, FaultManagedObjectNotFound, FaultSystemError, FaultNoPermission,
		FaultHostNotConnected, FaultTimedout:
	case FaultMethodNotFound:
		if r.InTask {
			return fmt.Errorf("fault rule: a missing method is answered at the call, not in a task")
		}
	case FaultHTTP503, FaultReset, FaultHang, FaultLostReply:
		if r.InTask {
			return fmt.Errorf("fault rule: %s happens on the connection, not in a task", r.Fault)
		}
	default:
		return fmt.Errorf("fault rule: unknown fault %q (one of %s)", r.Fault, faultKindsUsage)
	}
	if r.InTask && !strings.HasSuffix(r.Method, "*") && !cnsTaskMethods[r.Method] {
		return fmt.Errorf("fault rule: %s does not return a CNS task", r.Method)
	}
	return nil
}

// matches says whether the rule names method.
func (r FaultRule) matches(method string) bool {
	if prefix, ok := strings.CutSuffix(r.Method, "*"); ok {
		return strings.HasPrefix(method, prefix)
	}
	return r.Method == method
}

// cnsTaskMethods are the CNS methods that answer with a task (vim_tasks.go).
var cnsTaskMethods = map[string]bool{
	"CnsCreateVolume": true, "CnsDeleteVolume": true, "CnsAttachVolume": true, "CnsDetachVolume": true,
	"CnsExtendVolume": true, "CnsUpdateVolumeMetadata": true, "CnsCreateSnapshots": true,
	"CnsDeleteSnapshots": true, "CnsQuerySnapshots": true, "CnsReconfigVolumePolicy": true,
	"CnsQueryVolumeInfo": true,
}

// faultSet holds the rules and counts what they did.
type faultSet struct {
	mu     sync.Mutex
	rules  []*activeRule
	nextID int
	fired  map[string]int // "Method Fault" → how many
}

type activeRule struct {
	FaultRule
	id   int
	left int // Times left; -1: no limit
}

func (f *faultSet) add(r FaultRule) (int, error) {
	if err := r.validate(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	left := r.Times
	if left == 0 {
		left = -1
	}
	f.rules = append(f.rules, &activeRule{FaultRule: r, id: f.nextID, left: left})
	return f.nextID, nil
}

func (f *faultSet) remove(id int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.id == id {
			f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			return true
		}
	}
	return false
}

func (f *faultSet) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

func (f *faultSet) active() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rules) > 0
}

// take returns the rule that fires for this call of method at layer l, if
// one does, and counts it.
func (f *faultSet) take(method string, l layer) (FaultRule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.layer() != l || !r.matches(method) {
			continue
		}
		if l == layerTask && !cnsTaskMethods[method] {
			continue
		}
		if r.Probability > 0 && rand.Float64() >= r.Probability { //nolint:gosec // fault dice
			continue
		}
		if r.left > 0 {
			r.left--
			if r.left == 0 {
				f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
			}
		}
		if f.fired == nil {
			f.fired = map[string]int{}
		}
		f.fired[method+" "+r.Fault]++
		return r.FaultRule, true
	}
	return FaultRule{}, false
}

// taskError is the fault a CNS task of method ends with, if a rule says so.
func (f *faultSet) taskError(method string) types.BaseMethodFault {
	r, ok := f.take(method, layerTask)
	if !ok {
		return nil
	}
	return soapFault(r, method, types.ManagedObjectReference{Type: "CnsVolumeManager", Value: "cns-volume-manager"})
}

// soapFault is the vCenter fault of a rule, as vCenter fills it in.
func soapFault(r FaultRule, method string, this types.ManagedObjectReference) types.BaseMethodFault {
	msg := r.Message
	say := func(def string) string {
		if msg == "" {
			return def
		}
		return msg
	}
	var f types.BaseMethodFault
	switch r.Fault {
	case FaultCnsBusy:
		// vCenter's exact words are not published; these say what happened.
		m := say("CNS: Failed to run the operation: another operation is in progress. Retry later.")
		f = &cnstypes.CnsFault{Reason: m}
		msg = m
	case FaultNotAuthenticated:
		f = &types.NotAuthenticated{NoPermission: types.NoPermission{Object: &this, PrivilegeId: "System.View"}}
		msg = say("The session is not authenticated.")
	case FaultTaskInProgress:
		f = &types.TaskInProgress{}
		msg = say("Another task is already in progress.")
	case FaultInvalidState:
		f = &types.InvalidState{}
		msg = say("The operation is not allowed in the current state.")
	case FaultNoPermission:
		// vCenter names the privilege the role lacks and the object (the
		// one of the call: for CNS's, its volume manager).
		f = &types.NoPermission{Object: &this, PrivilegeId: "Cns.Searchable"}
		msg = say("Permission to perform this operation was denied.")
	case FaultHostNotConnected:
		f = &types.HostNotConnected{}
		msg = say("The operation is not allowed in the current connection state of the host.")
	case FaultTimedout:
		f = &types.Timedout{}
		msg = say("Operation timed out.")
	case FaultMethodNotFound:
		f = &types.MethodNotFound{Receiver: this, Method: method}
		msg = say(fmt.Sprintf("Method %s not found on %s.", method, this.Type))
	case FaultManagedObjectNotFound:
		f = &types.ManagedObjectNotFound{Obj: this}
		msg = say(fmt.Sprintf("The object 'vim.%s:%s' has already been deleted or has not been completely created", this.Type, this.Value))
	default: // FaultSystemError
		m := say("A general system error occurred: injected by vsphere-sim")
		f = &types.SystemError{Reason: m}
		msg = m
	}
	f.GetMethodFault().FaultMessage = []types.LocalizableMessage{{Key: "com.vmware.vsphere-sim.injected", Message: msg}}
	return f
}

// FaultStats counts the faults injected so far, by "Method Fault".
func (s *Sim) FaultStats() map[string]int {
	f := &s.lab.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.fired))
	for k, v := range f.fired {
		out[k] = v
	}
	return out
}

// InjectFault adds a fault rule; the ID removes it again (RemoveFault).
func (s *Sim) InjectFault(r FaultRule) (int, error) {
	return s.lab.faults.add(r)
}

// RemoveFault removes one rule; false when there is no such rule.
func (s *Sim) RemoveFault(id int) bool { return s.lab.faults.remove(id) }

// ClearFaults removes every fault rule (an outage in progress goes on).
func (s *Sim) ClearFaults() { s.lab.faults.clear() }

// FaultRules lists the rules in force, in the order they are tried.
func (s *Sim) FaultRules() []FaultRule {
	f := &s.lab.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FaultRule, 0, len(f.rules))
	for _, r := range f.rules {
		rule := r.FaultRule
		if r.left > 0 {
			rule.Times = r.left
		}
		out = append(out, rule)
	}
	return out
}

// internalCall marks the context of the embedded vCenter's own in-process
// calls, which no fault or latency applies to.
type internalCall struct{}

func internalContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalCall{}, true)
}

// dispatch is the hook the simulator calls before each SOAP call
// (Registry.Handler): a SOAP fault a rule asks for, or the latency of a
// call that does not return a CNS task.
func (b *lab) dispatch(ctx *simulator.Context, m *simulator.Method) (mo.Reference, types.BaseMethodFault) {
	if ctx.Context != nil && ctx.Context.Value(internalCall{}) != nil {
		return nil, nil
	}
	if f := b.release.methodNotFound(m.Name, m.This); f != nil {
		return nil, f
	}
	if r, ok := b.faults.take(m.Name, layerSOAP); ok {
		b.events.add(Event{Kind: EventFault, Method: m.Name, Detail: r.Fault})
		return nil, soapFault(r, m.Name, m.This)
	}
	if cnsTaskMethods[m.Name] {
		return nil, nil // the task takes the time (vim_tasks.go)
	}
	if b.routeVMTask(m) {
		return nil, nil // the task takes the time (vim_vmtasks.go)
	}
	d := b.latencyOf(m.Name)
	if d <= 0 {
		return nil, nil
	}
	if m.Name == "ReconfigVM_Task" && m.This.Type == "VirtualMachine" {
		// A reconfiguration holds the VM, as CNS attaches and detaches do.
		unlock := b.vmQueue.lock(m.This.Value)
		defer unlock()
	}
	select {
	case <-time.After(d):
	case <-b.stopping():
	}
	return nil, nil
}

// faultSummary is FaultStats as text, for logs.
func faultSummary(stats map[string]int) string {
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, stats[k]))
	}
	return strings.Join(parts, ", ")
}
