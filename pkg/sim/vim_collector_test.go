package sim

import (
	"context"
	"testing"

	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// TestLostWatchAnswerComesAgain: vCenter takes any version it returned, so
// a client whose WaitForUpdatesEx answer was lost asks again with the
// version it knows and gets the changes that answer carried; a version
// never handed out is InvalidCollectorVersion.
func TestLostWatchAnswerComesAgain(t *testing.T) {
	s := startSim(t, Options{NodeVMs: 1})
	c := connect(t, s)
	ctx := context.Background()
	vm := s.NodeVMs()[0]
	pc, err := property.DefaultCollector(c.vim).Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: vm.Ref}
	spec := types.PropertyFilterSpec{
		ObjectSet: []types.ObjectSpec{{Obj: ref}},
		PropSet:   []types.PropertySpec{{Type: "VirtualMachine", PathSet: []string{"runtime.powerState"}}},
	}
	if _, err := pc.CreateFilter(ctx, types.CreateFilter{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	wait := func(version string) (*types.UpdateSet, error) {
		secs := int32(1)
		res, err := methods.WaitForUpdatesEx(ctx, c.vim, &types.WaitForUpdatesEx{
			This: pc.Reference(), Version: version, Options: &types.WaitOptions{MaxWaitSeconds: &secs},
		})
		if err != nil {
			return nil, err
		}
		return res.Returnval, nil
	}
	first, err := wait("")
	if err != nil || first == nil {
		t.Fatalf("initial answer: %v %v", first, err)
	}
	if err := s.PowerOffVM(ctx, vm.Name); err != nil {
		t.Fatal(err)
	}
	inject(t, s, FaultRule{Method: "WaitForUpdatesEx", Fault: FaultLostReply, Times: 1})
	if _, err := wait(first.Version); err == nil || soap.IsSoapFault(err) {
		t.Fatalf("lost reply: got %v, want a network error", err)
	}
	again, err := wait(first.Version)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	if again != nil {
		for _, fs := range again.FilterSet {
			for _, u := range fs.ObjectSet {
				for _, ch := range u.ChangeSet {
					if ch.Name == "runtime.powerState" {
						got = string(ch.Val.(types.VirtualMachinePowerState))
					}
				}
			}
		}
	}
	if got != string(types.VirtualMachinePowerStatePoweredOff) {
		t.Fatalf("asked again with version %s after a lost answer: power state %q, want poweredOff (%+v)", first.Version, got, again)
	}
	if _, err := wait("12345"); vimFaultName(err) != "InvalidCollectorVersion" {
		t.Errorf("a version never handed out: got %v, want InvalidCollectorVersion", err)
	}
}
