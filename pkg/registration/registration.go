// Package registration serves kubelet plugin registration
// (k8s.io/kubelet/pkg/apis/pluginregistration/v1) from the node plugin
// itself, the job node-driver-registrar does otherwise: kubelet's plugin
// watcher finds <dir>/<driver>-reg.sock, asks GetInfo for the driver's name
// and CSI endpoint, registers the driver (CSINode lists it) and reports the
// outcome with NotifyRegistrationStatus.
package registration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/vsphere-cns/vsphere-csi/pkg/grpcserve"
)

// DefaultDir is where kubelet watches for registration sockets.
const DefaultDir = "/var/lib/kubelet/plugins_registry"

// SupportedVersions are the CSI versions the driver speaks.
var SupportedVersions = []string{"1.0.0"}

// Server answers kubelet's registration calls for one CSI driver.
type Server struct {
	registerapi.UnimplementedRegistrationServer

	// DriverName is the CSI driver's name.
	DriverName string
	// Endpoint is the path of the driver's CSI socket as kubelet sees it.
	Endpoint string

	mu         sync.Mutex
	registered bool
	lastErr    string
}

// GetInfo tells kubelet who we are and where the CSI socket is.
func (s *Server) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	klog.V(2).InfoS("Kubelet asked for plugin info", "driver", s.DriverName, "endpoint", s.Endpoint)
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.DriverName,
		Endpoint:          s.Endpoint,
		SupportedVersions: SupportedVersions,
	}, nil
}

// NotifyRegistrationStatus records and logs kubelet's verdict.
func (s *Server) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	s.mu.Lock()
	s.registered, s.lastErr = st.PluginRegistered, st.Error
	s.mu.Unlock()
	if st.PluginRegistered {
		klog.InfoS("Kubelet registered the driver", "driver", s.DriverName, "endpoint", s.Endpoint)
	} else {
		klog.ErrorS(errors.New(st.Error), "Kubelet refused to register the driver", "driver", s.DriverName, "endpoint", s.Endpoint)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Registered says whether kubelet reported a successful registration, and
// its last error otherwise.
func (s *Server) Registered() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registered, s.lastErr
}

// SocketPath is the registration socket of driverName in dir.
func SocketPath(dir, driverName string) string {
	return filepath.Join(dir, driverName+"-reg.sock")
}

// Serve serves s on SocketPath(dir, s.DriverName) until ctx ends, then
// removes the socket, which makes kubelet deregister the driver.
func (s *Server) Serve(ctx context.Context, dir string) error {
	if s.DriverName == "" || s.Endpoint == "" {
		return errors.New("registration: driver name and endpoint are required")
	}
	if !filepath.IsAbs(s.Endpoint) {
		return fmt.Errorf("registration: endpoint %q must be an absolute path (the CSI socket as kubelet sees it)", s.Endpoint)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	path := SocketPath(dir, s.DriverName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("registration: removing stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, s)
	klog.InfoS("Serving kubelet plugin registration", "socket", path, "driver", s.DriverName, "endpoint", s.Endpoint)
	defer func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "Removing the registration socket", "socket", path)
		}
	}()
	return grpcserve.Serve(ctx, srv, l, 5*time.Second)
}
