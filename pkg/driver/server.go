package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/grpcserve"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// CallObserver is told about every CSI call. The Prometheus metrics
// implement it.
type CallObserver interface {
	// ObserveCSI reports one call: the CSI method ("CreateVolume"), its
	// gRPC code ("OK"), the type of the volume it concerns (VolumeBlock,
	// VolumeFile or VolumeUnknown: volumeType), the type name of the
	// vCenter fault that made it fail ("" when none did: vcenter.FaultType)
	// and how long it took.
	ObserveCSI(method, code, volumeType, vcFault string, d time.Duration)
}

// The volume types a CallObserver hears.
const (
	VolumeBlock   = "block"   // a first-class disk
	VolumeFile    = "file"    // a vSAN File Service share (ReadWriteMany)
	VolumeUnknown = "unknown" // the request names no volume, or not a valid one
)

// volumeType tells from a CSI request alone which type of volume it
// concerns: a CreateVolume by its capabilities (a multi-node access mode
// makes a file volume), the others by the volume ID they name (file
// volumes' IDs carry fileVolumePrefix; a snapshot's ID starts with its
// volume's).
func volumeType(req any) string {
	var id string
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		caps := r.GetVolumeCapabilities()
		if len(caps) == 0 {
			return VolumeUnknown
		}
		for _, c := range caps {
			if multiNode(c) {
				return VolumeFile
			}
		}
		return VolumeBlock
	case interface{ GetVolumeId() string }:
		id = r.GetVolumeId()
	case *csi.CreateSnapshotRequest:
		id = r.GetSourceVolumeId()
	case *csi.DeleteSnapshotRequest:
		id, _, _ = parseSnapshotID(r.GetSnapshotId())
	case *csi.ListSnapshotsRequest:
		if id = r.GetSourceVolumeId(); id == "" {
			id, _, _ = parseSnapshotID(r.GetSnapshotId())
		}
	}
	switch {
	case id == "":
		return VolumeUnknown
	case isFileVolume(id):
		return VolumeFile
	}
	return VolumeBlock
}

// Listen opens the CSI endpoint: unix:///path/csi.sock (a stale socket file
// is removed first) or tcp://host:port.
func Listen(endpoint string) (net.Listener, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if u.Host != "" { // unix://relative/path
			path = filepath.Join(u.Host, path)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
		return net.Listen("unix", path)
	case "tcp":
		return net.Listen("tcp", u.Host)
	}
	return nil, fmt.Errorf("endpoint %q: want unix:///path or tcp://host:port", endpoint)
}

// Serve serves the CSI services of the driver's mode on l until ctx ends,
// then stops gracefully.
func (d *Driver) Serve(ctx context.Context, l net.Listener, obs CallObserver) error {
	srv := grpc.NewServer(grpc.UnaryInterceptor(logCalls(obs)))
	csi.RegisterIdentityServer(srv, d)
	if d.opts.serves(ModeController) {
		csi.RegisterControllerServer(srv, d)
	}
	if d.opts.serves(ModeNode) {
		csi.RegisterNodeServer(srv, d)
	}
	klog.InfoS("Serving CSI", "driver", Name, "version", d.opts.Version, "mode", d.opts.Mode, "endpoint", l.Addr().String())
	return grpcserve.Serve(ctx, srv, l, 10*time.Second)
}

// logCalls logs each CSI call once, its request stripped of secrets; errors
// always, successes at verbosity 4 (Probe and capability calls at 6). A
// handler that panics answers Internal and the process goes on.
func logCalls(obs CallObserver) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		resp, err = recovered(ctx, req, info, handler)
		took := time.Since(start)
		method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		code := status.Code(err)
		if obs != nil {
			obs.ObserveCSI(method, code.String(), volumeType(req), vcenter.FaultType(err), took)
		}
		if err != nil {
			klog.ErrorS(err, "CSI call failed", "method", method, "code", code.String(),
				"request", protosanitizer.StripSecrets(req), "duration", took)
			return resp, err
		}
		v := klog.Level(4)
		if method == "Probe" || strings.HasSuffix(method, "GetCapabilities") || method == "GetPluginInfo" {
			v = 6
		}
		klog.V(v).InfoS("CSI call", "method", method, "request", protosanitizer.StripSecrets(req),
			"response", protosanitizer.StripSecrets(resp), "duration", took)
		return resp, err
	}
}

// recovered calls handler, turning a panic into Internal (with the stack
// in the log) instead of a dead process.
func recovered(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(fmt.Errorf("%v", r), "CSI call panicked: a bug; please report it with this log",
				"method", info.FullMethod, "request", protosanitizer.StripSecrets(req), "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s (a bug, logged with its stack): %v", info.FullMethod, r)
		}
	}()
	return handler(ctx, req)
}
