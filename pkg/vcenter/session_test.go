package vcenter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vsphere-cns/vsphere-csi/pkg/sim"
	"github.com/vsphere-cns/vsphere-csi/pkg/sim/simtest"
)

func TestNewRefusesBadCredentialsAndTLS(t *testing.T) {
	s := simtest.Start(t, sim.Options{NodeVMs: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	opts := simOptions(s)
	opts.Password = "wrong-password"
	_, err := New(ctx, opts)
	if !errors.Is(err, ErrNotAuthenticated) {
		t.Errorf("bad password: %v; want ErrNotAuthenticated", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the error shows the password: %v", err)
	}

	opts = simOptions(s)
	opts.Thumbprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"
	if _, err := New(ctx, opts); err == nil || !strings.Contains(err.Error(), "thumbprint") {
		t.Errorf("wrong thumbprint: %v; want a thumbprint error", err)
	}

	opts = simOptions(s)
	opts.Thumbprint = ""
	if _, err := New(ctx, opts); err == nil {
		t.Error("no thumbprint, no CA, not insecure: want a TLS error")
	}

	opts = simOptions(s)
	opts.Datacenters = []string{"NoSuchDC"}
	if _, err := New(ctx, opts); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown datacenter: %v; want ErrInvalidArgument", err)
	}
}

func TestAllDatacentersAndInsecure(t *testing.T) {
	e := newEnv(t, 3, func(o *Options) {
		o.Datacenters = nil
		o.Thumbprint = ""
		o.Insecure = true
	})
	want := e.sim.NodeVMs()[0]
	vm, err := e.c.NodeVM(ctxT(t), want.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != want.Name || vm.ID != want.Ref || vm.Host != want.Host {
		t.Errorf("NodeVM = %+v, want the simulator's %+v", vm, want)
	}
	// Every datacenter searched: every datastore of the inventory is known.
	all, err := e.c.Datastores(ctxT(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(e.sim.Datastores()) {
		t.Errorf("Datastores: %d, the inventory has %d", len(all), len(e.sim.Datastores()))
	}
}

func TestCloseLogsOutForGood(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	if err := e.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Healthy(ctx); err == nil {
		t.Error("Healthy after Close = nil")
	}
	mark := e.rec.mark()
	if _, err := e.c.FindVolumeByName(ctx, "x"); err == nil {
		t.Error("a call after Close succeeded")
	}
	for _, m := range e.rec.since(mark) {
		if m == "Login" {
			t.Error("logged in again after Close")
		}
	}
}

// TestTransportSeesEveryRequest: the HTTP counter sees every SOAP call the
// Observer sees (all three endpoints), plus the two requests made before
// the SOAP chain exists (vim25 RetrieveServiceContent, the CNS
// service-version GET).
func TestTransportSeesEveryRequest(t *testing.T) {
	e := newEnv(t, 3, nil)
	ctx := ctxT(t)
	if _, err := e.c.PolicyByName(ctx, "Gold"); err != nil {
		t.Fatal(err)
	}
	vol, err := e.c.CreateVolume(ctx, CreateSpec{Name: "pvc-t", CapacityBytes: gib, DatastoreIDs: placeable(t, e.c, "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AttachVolume(ctx, vol.ID, e.sim.NodeVMs()[0].UUID); err != nil {
		t.Fatal(err)
	}
	e.settle(300 * time.Millisecond)
	// The long poll in flight is counted at the transport, not yet observed.
	http, soap := e.n.Count(), int64(e.rec.mark())
	if http != soap+2+1 {
		t.Errorf("HTTP requests %d; SOAP calls observed %d (+2 before the chain, +1 poll in flight)", http, soap)
	}
}

// TestRotatedPasswordLocksNothing (issue 11, finding 5): vCenter's password
// is changed under the driver and its sessions end. However many calls
// follow (and the watch's restarts), the driver tries at most 3 logins
// with the refused credentials (vCenter's SSO locks an account after 5 in
// 180 s), says so in a metric, and carries on at once with new ones.
func TestRotatedPasswordLocksNothing(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := ctxT(t)
	e.sim.SetPassword("R0tated-Passw0rd!")
	if _, err := e.sim.EndSessions(ctx); err != nil {
		t.Fatal(err)
	}
	mark := e.rec.mark()
	deadline := time.Now().Add(4 * time.Second) // the watch restarts several times meanwhile
	calls := 0
	for time.Now().Before(deadline) {
		_, err := e.c.FindVolumeByName(ctx, "x")
		if !errors.Is(err, ErrNotAuthenticated) {
			t.Fatalf("with the old password: %v, want ErrNotAuthenticated", err)
		}
		calls++
		time.Sleep(50 * time.Millisecond)
	}
	refused := 0
	for _, m := range e.rec.since(mark) {
		if strings.HasPrefix(m, "Login") {
			refused++
		}
	}
	if refused > maxRefusedLogins {
		t.Errorf("%d logins tried with refused credentials in %d calls, want at most %d", refused, calls, maxRefusedLogins)
	}
	if e.rec.refused != refused || refused == 0 {
		t.Errorf("LoginRefused reported %d times for %d refused logins", e.rec.refused, refused)
	}
	e.c.SetCredentials(e.sim.Username(), "R0tated-Passw0rd!")
	if _, err := e.c.FindVolumeByName(ctx, "x"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("with the new password: %v", err)
	}
}
