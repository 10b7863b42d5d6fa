package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func inject(t *testing.T, s *Sim, r FaultRule) {
	t.Helper()
	if _, err := s.InjectFault(r); err != nil {
		t.Fatal(err)
	}
}

func vimFaultName(err error) string {
	if !soap.IsSoapFault(err) {
		return ""
	}
	return reflect.TypeOf(soap.ToSoapFault(err).VimFault()).Name()
}

// TestSOAPFaultsAsAClientSeesThem: each named fault comes back as the SOAP
// fault vCenter sends, only for the calls the rule names, as many times as
// it says; the call is not done.
func TestSOAPFaultsAsAClientSeesThem(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	for _, tc := range []struct{ fault, want string }{
		{FaultCnsBusy, "CnsFault"},
		{FaultNotAuthenticated, "NotAuthenticated"},
		{FaultTaskInProgress, "TaskInProgress"},
		{FaultInvalidState, "InvalidState"},
		{FaultManagedObjectNotFound, "ManagedObjectNotFound"},
		{FaultSystemError, "SystemError"},
	} {
		inject(t, s, FaultRule{Method: "CnsCreateVolume", Fault: tc.fault, Times: 1})
		_, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec("faulted-"+tc.fault, 16, "")})
		if got := vimFaultName(err); got != tc.want {
			t.Errorf("%s: got %v (%s), want a %s SOAP fault", tc.fault, err, got, tc.want)
		}
		if n := len(queryByName(t, c, "faulted-"+tc.fault)); n != 0 {
			t.Errorf("%s: the call was done all the same", tc.fault)
		}
	}
	// The rule is used up: the next call goes through.
	mustCreate(t, c, createSpec("after-the-faults", 16, ""))
	if got := s.FaultStats()["CnsCreateVolume CnsFault"]; got != 1 {
		t.Errorf("FaultStats: %v", s.FaultStats())
	}
	// A CnsFault carries its message in the fault, where clients read it.
	inject(t, s, FaultRule{Method: "CnsQueryVolume", Fault: FaultCnsBusy, Times: 1, Message: "busy now"})
	_, err := c.cns.QueryVolume(ctx, &cnstypes.CnsQueryFilter{})
	if cf, ok := soap.ToSoapFault(err).VimFault().(cnstypes.CnsFault); !ok || cf.Reason != "busy now" {
		t.Errorf("CnsFault: %#v", soap.ToSoapFault(err).VimFault())
	}
}

// TestFaultProbability: a rule with a probability fails about that share
// of calls, and Times caps it.
func TestFaultProbability(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	inject(t, s, FaultRule{Method: "CnsQueryVolume", Fault: FaultCnsBusy, Probability: 0.5, Times: 30})
	failed := 0
	for range 200 {
		if _, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{}); err != nil {
			failed++
		}
	}
	if failed != 30 {
		t.Errorf("%d of 200 calls failed, want the 30 the rule allows", failed)
	}
	if len(s.FaultRules()) != 0 {
		t.Errorf("a used-up rule stays: %+v", s.FaultRules())
	}
}

// TestTransportFaults: a reset loses the call (not done), a lost reply
// loses only the answer (done), a 503 and a hang fail the call without
// doing it.
func TestTransportFaults(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()
	create := func(name string) error {
		_, err := c.cns.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec(name, 16, "")})
		return err
	}
	// The task of a create runs in the background: wait for it.
	waitFor := func(name string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(queryByName(t, c, name)) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d volumes, want %d", name, len(queryByName(t, c, name)), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	inject(t, s, FaultRule{Method: "CnsCreateVolume", Fault: FaultReset, Times: 1})
	if err := create("reset"); err == nil || soap.IsSoapFault(err) {
		t.Errorf("reset: got %v, want a network error", err)
	}
	if err := create("after-reset"); err != nil { // the client carries on
		t.Errorf("the call after a reset: %v", err)
	}
	waitFor("after-reset", 1)
	if n := len(queryByName(t, c, "reset")); n != 0 {
		t.Errorf("reset: the call was done (%d volumes)", n)
	}

	inject(t, s, FaultRule{Method: "CnsCreateVolume", Fault: FaultLostReply, Times: 1})
	if err := create("lost-reply"); err == nil || soap.IsSoapFault(err) {
		t.Errorf("lost reply: got %v, want a network error", err)
	}
	waitFor("lost-reply", 1)

	inject(t, s, FaultRule{Method: "CnsCreateVolume", Fault: FaultHTTP503, Times: 1})
	if err := create("unavailable"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: got %v", err)
	}

	inject(t, s, FaultRule{Method: "CnsQueryVolume", Fault: FaultHang, Duration: time.Hour, Times: 1})
	hctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.cns.QueryVolume(hctx, &cnstypes.CnsQueryFilter{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang: got %v, want the caller's deadline", err)
	}
	if n := len(queryByName(t, c, "unavailable")); n != 0 {
		t.Errorf("503: the call was done")
	}
}

// TestTaskFailsAfterRunning: InTask lets the task run its latency and then
// fail with the named fault, doing nothing.
func TestTaskFailsAfterRunning(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	inject(t, s, FaultRule{Method: "CnsCreateVolume", Fault: FaultCnsBusy, InTask: true, Times: 1})
	task, err := c.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{createSpec("task-fails", 16, "")})
	if err != nil {
		t.Fatalf("the call itself must be answered: %v", err)
	}
	_, err = cns.GetTaskInfo(context.Background(), task)
	if err == nil {
		t.Fatal("the task succeeded")
	}
	if f, ok := err.(interface{ Fault() types.BaseMethodFault }); !ok {
		t.Errorf("task error %T carries no fault", err)
	} else if _, isCns := f.Fault().(*cnstypes.CnsFault); !isCns {
		t.Errorf("task fault %T, want CnsFault", f.Fault())
	}
	if n := len(queryByName(t, c, "task-fails")); n != 0 {
		t.Errorf("a failed task made %d volumes", n)
	}
	if _, err := s.InjectFault(FaultRule{Method: "CnsQueryVolume", Fault: FaultCnsBusy, InTask: true, Times: 1}); err == nil {
		t.Error("InTask accepted for a method without a task")
	}
	if _, err := s.InjectFault(FaultRule{Method: "CnsCreateVolume", Fault: "Gremlins", Times: 1}); err == nil {
		t.Error("an unknown fault accepted")
	}
}

// TestOutage: during an outage every call fails on the connection; after
// it the same client carries on.
func TestOutage(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	s.Outage(time.Hour)
	if _, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{}); err == nil || soap.IsSoapFault(err) {
		t.Fatalf("during the outage: got %v, want a network error", err)
	}
	s.Outage(0)
	if _, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// TestEndSessions: every client's next call gets NotAuthenticated.
func TestEndSessions(t *testing.T) {
	s := startSim(t, Options{})
	c1, c2 := connect(t, s), connect(t, s)
	n, err := s.EndSessions(context.Background())
	if err != nil || n < 2 {
		t.Fatalf("ended %d sessions (%v), want at least 2", n, err)
	}
	for _, c := range []*clients{c1, c2} {
		if _, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{}); !isNotAuthenticated(err) {
			t.Errorf("after EndSessions: got %v, want NotAuthenticated", err)
		}
	}
}

// TestNodeVMPowerOffAndDelete: powered off, a VM keeps its disks in
// vCenter and its node loses their devices (back at power-on); deleted,
// its volumes are detached and kept, attachable elsewhere with their data.
func TestNodeVMPowerOffAndDelete(t *testing.T) {
	hv := os.Geteuid() == 0
	s := startSim(t, Options{NodeVMs: 2, Hypervisor: hv})
	c := connect(t, s)
	ctx := context.Background()
	n1, n2 := s.NodeVMs()[0], s.NodeVMs()[1]
	id := mustCreate(t, c, createSpec("on-a-node", 64, ""))
	uuid, f := attach(t, c, id, vmRef(n1))
	if f != nil {
		t.Fatal(f.LocalizedMessage)
	}
	link := filepath.Join(n1.ByIDDir, "wwn-0x"+uuid)
	file, _ := s.VolumeFile(id)
	writeAt(t, file, "the volume's data")

	if err := s.PowerOffVM(ctx, n1.Name); err != nil {
		t.Fatal(err)
	}
	if disks := vmDisks(t, c, vmRef(n1)); len(disks) != 1 {
		t.Errorf("powered off: %d disks on the VM, want 1", len(disks))
	}
	if _, err := os.Lstat(link); hv && !os.IsNotExist(err) {
		t.Errorf("powered off: the node still has the device link (%v)", err)
	}
	if err := s.PowerOnVM(ctx, n1.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); hv && err != nil {
		t.Errorf("powered on again: no device link: %v", err)
	}

	if err := s.DeleteVM(ctx, n1.Name); err != nil {
		t.Fatal(err)
	}
	if s.NodeVMs()[0].State != "deleted" {
		t.Errorf("state after delete: %s", s.NodeVMs()[0].State)
	}
	if _, err := os.Lstat(link); hv && !os.IsNotExist(err) {
		t.Errorf("deleted: the device link stays (%v)", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("deleted VM took the volume's disk with it: %v", err)
	}
	uuid2, f := attach(t, c, id, vmRef(n2))
	if f != nil {
		t.Fatalf("attach elsewhere after the VM was deleted: %s", f.LocalizedMessage)
	}
	where := file
	if hv {
		where = filepath.Join(n2.ByIDDir, "wwn-0x"+uuid2)
	}
	if got := readAt(t, where, len("the volume's data")); got != "the volume's data" {
		t.Errorf("data on the other node: %q", got)
	}
}

func writeAt(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(data), 0); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path string, n int) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return string(buf)
}

// TestFillDatastore: a filled datastore refuses a volume for want of
// space; given back, it takes it.
func TestFillDatastore(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ds := dsRef(t, s, "silver-ds")
	if err := s.FillDatastore("silver-ds", 10*mib); err != nil {
		t.Fatal(err)
	}
	if got := freeSpace(t, c, ds); got != 10*mib {
		t.Errorf("free space %d, want %d", got, 10*mib)
	}
	task, err := c.cns.CreateVolume(context.Background(), []cnstypes.CnsVolumeCreateSpec{createSpec("too-big", 64, "", ds)})
	if f := faultOf(result(t, task, err)); f == nil || !strings.Contains(f.LocalizedMessage, "Insufficient disk space") {
		t.Errorf("create on a full datastore: %+v", f)
	}
	if err := s.FillDatastore("silver-ds", -1); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c, createSpec("fits", 64, "", ds))
}

// TestControlEndpoint drives the laboratory over HTTP as a person would.
func TestControlEndpoint(t *testing.T) {
	r, err := NewRunner(context.Background(), Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	h := r.Handler()
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, path, strings.NewReader(body))
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, req)
		return w.code, w.body.String()
	}
	if code, body := do("PUT", "/latency", "realistic,CnsCreateVolume=4s"); code != 0 || !strings.Contains(body, "CnsCreateVolume=4s") {
		t.Errorf("PUT /latency: %d %s", code, body)
	}
	if code, _ := do("PUT", "/latency", "CnsCreateVolume=soon"); code != http.StatusBadRequest {
		t.Errorf("bad latency: %d", code)
	}
	if code, body := do("POST", "/faults", `{"method":"WaitForUpdatesEx","fault":"Hang","duration":"30s","times":1}`); code != 0 || !strings.Contains(body, `"id"`) {
		t.Errorf("POST /faults: %d %s", code, body)
	}
	if rules := r.Sim().FaultRules(); len(rules) != 1 || rules[0].Duration != 30*time.Second {
		t.Errorf("rules: %+v", rules)
	}
	if code, _ := do("POST", "/faults", `{"method":"X","fault":"Nope","times":1}`); code != http.StatusBadRequest {
		t.Errorf("bad rule: %d", code)
	}
	// Every fault the laboratory names, it injects (the driver's fault
	// table test goes through each: pkg/driver TestVCenterFaultCodes).
	for _, f := range strings.Split(faultKindsUsage, ", ") {
		rule := fmt.Sprintf(`{"method":"CnsQueryVolume","fault":%q,"times":1,"duration":"1s"}`, f)
		if code, body := do("POST", "/faults", rule); code != 0 {
			t.Errorf("POST /faults %s: %d %s", f, code, body)
		}
	}
	do("DELETE", "/faults", "")
	do("DELETE", "/faults", "")
	if len(r.Sim().FaultRules()) != 0 {
		t.Error("DELETE /faults left rules")
	}
	url := r.Sim().URL()
	if code, body := do("POST", "/restart?down=10ms&tasks=abandon", ""); code != 0 || r.Sim().URL() != url {
		t.Errorf("restart: %d %s, URL %s → %s", code, body, url, r.Sim().URL())
	}
	if got := r.Sim().Latency().Methods["CnsCreateVolume"]; got != 4*time.Second {
		t.Errorf("latency after the restart: %v", got)
	}
	if code, body := do("POST", "/vms/k8s-node-2/power-off", ""); code != 0 {
		t.Errorf("power-off: %d %s", code, body)
	}
	if code, body := do("GET", "/vms", ""); !strings.Contains(body, "poweredOff") {
		t.Errorf("GET /vms: %d %s", code, body)
	}
	if code, body := do("GET", "/events", ""); !strings.Contains(body, `"kind":"vm"`) {
		t.Errorf("GET /events: %d %s", code, body)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *recorder) WriteHeader(code int)        { r.code = code }

// TestPasswordRotation: after SetPassword the old password is refused with
// InvalidLogin and the new one works; open sessions stay.
func TestPasswordRotation(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	s.SetPassword("N3w-Passw0rd!")
	if _, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{}); err != nil {
		t.Errorf("an open session after the rotation: %v", err)
	}
	if err := loginWith(s, DefaultPassword); vimFaultName(err) != "InvalidLogin" {
		t.Errorf("the old password: got %v, want InvalidLogin", err)
	}
	if err := loginWith(s, "N3w-Passw0rd!"); err != nil {
		t.Errorf("the new password: %v", err)
	}
	if s.Password() != "N3w-Passw0rd!" {
		t.Fatal("Password() does not say the new one")
	}
	connect(t, s) // logs in with Password()
}

// loginWith logs in on a new connection with password.
func loginWith(s *Sim, password string) error {
	ctx := context.Background()
	u, _ := url.Parse(s.URL())
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, s.Thumbprint())
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	return session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), password))
}
