package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPanicBecomesInternal (issue 11, finding 9): a handler that panics
// answers Internal; the process goes on serving.
func TestPanicBecomesInternal(t *testing.T) {
	intercept := logCalls(nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/CreateVolume"}
	_, err := intercept(context.Background(), "req", info, func(context.Context, any) (any, error) {
		var m map[string]int
		m["boom"]++ // a nil map: a bug
		return nil, nil
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	resp, err := intercept(context.Background(), "req", info, func(context.Context, any) (any, error) { return "fine", nil })
	if err != nil || resp != "fine" {
		t.Fatalf("the next call: %v %v", resp, err)
	}
}

// TestVolumeTypeOfRequests: the volume type the metrics get is read from
// the request: CreateVolume's access modes, the volume ID's file prefix, a
// snapshot ID's volume.
func TestVolumeTypeOfRequests(t *testing.T) {
	rwx := []*csi.VolumeCapability{{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}}
	rwo := []*csi.VolumeCapability{{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}
	fileID := fileVolumePrefix + "1234"
	for name, c := range map[string]struct {
		req  any
		want string
	}{
		"create RWX":          {&csi.CreateVolumeRequest{VolumeCapabilities: rwx}, VolumeFile},
		"create RWO":          {&csi.CreateVolumeRequest{VolumeCapabilities: rwo}, VolumeBlock},
		"create, no caps":     {&csi.CreateVolumeRequest{}, VolumeUnknown},
		"delete file":         {&csi.DeleteVolumeRequest{VolumeId: fileID}, VolumeFile},
		"delete block":        {&csi.DeleteVolumeRequest{VolumeId: "f3c1-uuid"}, VolumeBlock},
		"delete in-tree VMDK": {&csi.DeleteVolumeRequest{VolumeId: "[ds1] kubevols/a.vmdk"}, VolumeBlock},
		"delete, no ID":       {&csi.DeleteVolumeRequest{}, VolumeUnknown},
		"publish file":        {&csi.ControllerPublishVolumeRequest{VolumeId: fileID}, VolumeFile},
		"unpublish block":     {&csi.ControllerUnpublishVolumeRequest{VolumeId: "v1"}, VolumeBlock},
		"expand block":        {&csi.ControllerExpandVolumeRequest{VolumeId: "v1"}, VolumeBlock},
		"stage file":          {&csi.NodeStageVolumeRequest{VolumeId: fileID}, VolumeFile},
		"snapshot of block":   {&csi.CreateSnapshotRequest{SourceVolumeId: "v1"}, VolumeBlock},
		"delete snapshot":     {&csi.DeleteSnapshotRequest{SnapshotId: snapshotID("v1", "s1")}, VolumeBlock},
		"list snapshots, all": {&csi.ListSnapshotsRequest{}, VolumeUnknown},
		"list volumes":        {&csi.ListVolumesRequest{}, VolumeUnknown},
	} {
		if got := volumeType(c.req); got != c.want {
			t.Errorf("%s: volumeType = %q, want %q", name, got, c.want)
		}
	}
}

// TestInterceptorTellsTheObserver: the interceptor hands the observer the
// method, the code, the request's volume type and the vCenter fault that
// the handler's error keeps through toStatus.
func TestInterceptorTellsTheObserver(t *testing.T) {
	var got []string
	obs := observerFunc(func(method, code, volumeType, vcFault string, _ time.Duration) {
		got = append(got, strings.Join([]string{method, code, volumeType, vcFault}, " "))
	})
	intercept := logCalls(obs)
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Controller/DeleteVolume"}
	req := &csi.DeleteVolumeRequest{VolumeId: fileVolumePrefix + "1"}
	_, _ = intercept(context.Background(), req, info, func(context.Context, any) (any, error) {
		return nil, toStatus(fmt.Errorf("delete: %w", errors.New("no fault")))
	})
	_, _ = intercept(context.Background(), req, info, func(context.Context, any) (any, error) {
		return &csi.DeleteVolumeResponse{}, nil
	})
	want := []string{"DeleteVolume Internal file ", "DeleteVolume OK file "}
	if !slices.Equal(got, want) {
		t.Errorf("observer heard %q, want %q", got, want)
	}
}

type observerFunc func(method, code, volumeType, vcFault string, d time.Duration)

func (f observerFunc) ObserveCSI(method, code, volumeType, vcFault string, d time.Duration) {
	f(method, code, volumeType, vcFault, d)
}
