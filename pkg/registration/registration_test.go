package registration

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// TestServeAsKubeletSeesIt talks to the socket as kubelet's plugin watcher
// does: GetInfo, then NotifyRegistrationStatus; the socket goes on stop.
func TestServeAsKubeletSeesIt(t *testing.T) {
	dir := t.TempDir()
	s := &Server{DriverName: "csi.vsphere.vmware.com", Endpoint: "/var/lib/kubelet/plugins/csi.vsphere.vmware.com/csi.sock"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, dir) }()

	path := SocketPath(dir, s.DriverName)
	if want := dir + "/csi.vsphere.vmware.com-reg.sock"; path != want {
		t.Fatalf("SocketPath = %s, want %s", path, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration socket %s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := registerapi.NewRegistrationClient(conn)
	info, err := c.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.Type != registerapi.CSIPlugin || info.Name != s.DriverName || info.Endpoint != s.Endpoint || len(info.SupportedVersions) == 0 {
		t.Fatalf("GetInfo = %+v, want a CSIPlugin named %s at %s with versions", info, s.DriverName, s.Endpoint)
	}
	if ok, _ := s.Registered(); ok {
		t.Fatal("registered before kubelet said so")
	}
	if _, err := c.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "boom"}); err != nil {
		t.Fatalf("NotifyRegistrationStatus: %v", err)
	}
	if ok, msg := s.Registered(); ok || msg != "boom" {
		t.Fatalf("Registered() = %v, %q after a refusal", ok, msg)
	}
	if _, err := c.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus: %v", err)
	}
	if ok, _ := s.Registered(); !ok {
		t.Fatal("not registered after kubelet said so")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket still there after stop: %v", err)
	}
}

func TestServeRejectsBadEndpoints(t *testing.T) {
	for _, s := range []*Server{
		{DriverName: "d"},
		{DriverName: "d", Endpoint: "relative/csi.sock"},
	} {
		if err := s.Serve(context.Background(), t.TempDir()); err == nil {
			t.Errorf("Serve with endpoint %q: no error", s.Endpoint)
		}
	}
}
