package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/node/nodetest"
)

// The node service's unit tests: the real node logic over pkg/node's Fake
// (mount-utils' FakeMounter, faked filesystem tools, devices as files).

const (
	testUUID  = "6000C29D-1111-2222-3333-444455556666"
	otherUUID = "6000c29d11112222333344445555aaaa"
	gi        = int64(1) << 30
)

type nodeEnv struct {
	d    *Driver
	fake *nodetest.Fake
	dir  string
}

func newNodeEnv(t *testing.T) *nodeEnv {
	t.Helper()
	dir := t.TempDir()
	fake := nodetest.NewFake(filepath.Join(dir, "machine"))
	d, err := NewDriver(Options{Mode: ModeNode, NodeID: "4213a2b4-0000-1111-2222-333344445555", ByIDDir: fake.ByIDDir()}, nil, fake)
	if err != nil {
		t.Fatal(err)
	}
	return &nodeEnv{d: d, fake: fake, dir: dir}
}

func (e *nodeEnv) staging() string { return filepath.Join(e.dir, "staging") }
func (e *nodeEnv) target() string  { return filepath.Join(e.dir, "pods", "target") }

func mountCap(fsType string, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

func (e *nodeEnv) stageReq(c *csi.VolumeCapability) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: e.staging(), VolumeCapability: c,
		PublishContext: map[string]string{PublishContextDiskUUID: testUUID},
	}
}

func (e *nodeEnv) publishReq(c *csi.VolumeCapability, readOnly bool) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId: "vol-1", StagingTargetPath: e.staging(), TargetPath: e.target(), VolumeCapability: c,
		Readonly: readOnly, PublishContext: map[string]string{PublishContextDiskUUID: testUUID},
	}
}

func wantCode(t *testing.T, err error, code codes.Code, msgParts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v: want code %s", err, code)
	}
	for _, p := range msgParts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

func (e *nodeEnv) mountsAt(path string) []string {
	var out []string
	mps, _ := e.fake.Mounts.List()
	for _, mp := range mps {
		if mp.Path == path {
			out = append(out, mp.Device+" "+mp.Type+" "+strings.Join(mp.Opts, ","))
		}
	}
	return out
}

func TestNodeStageVolume(t *testing.T) {
	tests := []struct {
		name    string
		disk    func(*nodetest.FakeDisk) // the disk before staging; nil: no disk
		req     func(e *nodeEnv) *csi.NodeStageVolumeRequest
		code    codes.Code
		msg     []string
		formats int    // mkfs runs expected
		fsType  string // the disk's filesystem afterwards
		mounted bool
	}{
		{
			name:    "blank disk is formatted ext4 by default and mounted",
			disk:    func(*nodetest.FakeDisk) {},
			req:     func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("")) },
			formats: 1, fsType: "ext4", mounted: true,
		},
		{
			name:    "blank disk is formatted xfs when asked",
			disk:    func(*nodetest.FakeDisk) {},
			req:     func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("XFS")) },
			formats: 1, fsType: "xfs", mounted: true,
		},
		{
			name:    "formatted disk is not reformatted",
			disk:    func(d *nodetest.FakeDisk) { d.FSType, d.FSSize, d.UsedBytes = "ext4", d.Size, 123 },
			req:     func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("ext4")) },
			formats: 0, fsType: "ext4", mounted: true,
		},
		{
			name: "another filesystem is refused, not reformatted",
			disk: func(d *nodetest.FakeDisk) { d.FSType, d.FSSize = "xfs", d.Size },
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("ext4")) },
			code: codes.FailedPrecondition, msg: []string{"holds a xfs filesystem", "asks for ext4", "neither mounted nor reformatted"},
			formats: 0, fsType: "xfs",
		},
		{
			name: "a partition table is refused",
			disk: func(d *nodetest.FakeDisk) { d.PartitionTable = true },
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("")) },
			code: codes.FailedPrecondition, msg: []string{"partition table", "never formatted"},
		},
		{
			name: "block access touches no filesystem",
			disk: func(*nodetest.FakeDisk) {},
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(blockCap()) },
		},
		{
			name: "device never appears",
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("")) },
			code: codes.NotFound, msg: []string{"wwn-0x6000c29d111122223333444455556666", "disk.EnableUUID"},
		},
		{
			name: "bad disk UUID",
			req: func(e *nodeEnv) *csi.NodeStageVolumeRequest {
				r := e.stageReq(mountCap(""))
				r.PublishContext[PublishContextDiskUUID] = "not-a-uuid"
				return r
			},
			code: codes.InvalidArgument, msg: []string{"invalid disk UUID"},
		},
		{
			name: "no diskUUID in publish context",
			req: func(e *nodeEnv) *csi.NodeStageVolumeRequest {
				r := e.stageReq(mountCap(""))
				r.PublishContext = nil
				return r
			},
			code: codes.InvalidArgument, msg: []string{"diskUUID"},
		},
		{
			name: "no volume id",
			req: func(e *nodeEnv) *csi.NodeStageVolumeRequest {
				r := e.stageReq(mountCap(""))
				r.VolumeId = ""
				return r
			},
			code: codes.InvalidArgument, msg: []string{"volume_id"},
		},
		{
			name: "no staging path",
			req: func(e *nodeEnv) *csi.NodeStageVolumeRequest {
				r := e.stageReq(mountCap(""))
				r.StagingTargetPath = ""
				return r
			},
			code: codes.InvalidArgument, msg: []string{"staging_target_path"},
		},
		{
			name: "no capability",
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(nil) },
			code: codes.InvalidArgument, msg: []string{"capability"},
		},
		{
			name: "unsupported fs type",
			req:  func(e *nodeEnv) *csi.NodeStageVolumeRequest { return e.stageReq(mountCap("ntfs")) },
			code: codes.InvalidArgument, msg: []string{"ntfs"},
		},
		{
			name: "multi-node access is refused",
			req: func(e *nodeEnv) *csi.NodeStageVolumeRequest {
				c := mountCap("")
				c.AccessMode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
				return e.stageReq(c)
			},
			code: codes.InvalidArgument, msg: []string{"ReadWriteMany", "file volume"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newNodeEnv(t)
			if tt.disk != nil {
				e.fake.AddDisk(testUUID, 5*gi)
				e.fake.UpdateDisk(testUUID, tt.disk)
			}
			_, err := e.d.NodeStageVolume(context.Background(), tt.req(e))
			if tt.code != codes.OK {
				wantCode(t, err, tt.code, tt.msg...)
			} else if err != nil {
				t.Fatalf("NodeStageVolume: %v", err)
			}
			if got := len(e.mountsAt(e.staging())); (got == 1) != tt.mounted || got > 1 {
				t.Errorf("%d mounts at the staging path, want mounted=%t", got, tt.mounted)
			}
			if tt.disk == nil {
				return
			}
			d := e.fake.Disk(testUUID)
			if d.Formats != tt.formats || d.FSType != tt.fsType {
				t.Errorf("disk has %q after %d formats, want %q after %d", d.FSType, d.Formats, tt.fsType, tt.formats)
			}
		})
	}
}

func TestNodeStageIdempotent(t *testing.T) {
	e := newNodeEnv(t)
	e.fake.AddDisk(testUUID, 5*gi)
	ctx := context.Background()
	for i := range 3 {
		if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap("ext4"))); err != nil {
			t.Fatalf("stage %d: %v", i, err)
		}
	}
	if m := e.mountsAt(e.staging()); len(m) != 1 {
		t.Errorf("mounts at staging: %q, want one", m)
	}
	if d := e.fake.Disk(testUUID); d.Formats != 1 {
		t.Errorf("%d formats, want 1", d.Formats)
	}
	// Same path, another fs type asked: incompatible.
	_, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap("xfs")))
	wantCode(t, err, codes.AlreadyExists, "already staged", "as ext4, not xfs")

	// Another volume's disk asked at the same staging path.
	e.fake.AddDisk(otherUUID, gi)
	r := e.stageReq(mountCap("ext4"))
	r.VolumeId, r.PublishContext[PublishContextDiskUUID] = "vol-2", otherUUID
	_, err = e.d.NodeStageVolume(ctx, r)
	wantCode(t, err, codes.AlreadyExists, "already has")
}

func TestNodeStageGrowsFilesystem(t *testing.T) {
	e := newNodeEnv(t)
	e.fake.AddDisk(testUUID, 10*gi)
	e.fake.UpdateDisk(testUUID, func(d *nodetest.FakeDisk) { d.FSType, d.FSSize = "ext4", 5*gi })
	if _, err := e.d.NodeStageVolume(context.Background(), e.stageReq(mountCap(""))); err != nil {
		t.Fatal(err)
	}
	if d := e.fake.Disk(testUUID); d.FSSize != 10*gi || d.Formats != 0 {
		t.Errorf("filesystem of %d bytes after %d formats, want grown to %d, never formatted", d.FSSize, d.Formats, 10*gi)
	}
	cmds := strings.Join(e.fake.Commands(), "\n")
	// Grown offline, before the mount: e2fsck then resize2fs, no mkfs.
	if !strings.Contains(cmds, "e2fsck -f -p") || !strings.Contains(cmds, "resize2fs") || strings.Contains(cmds, "mkfs") {
		t.Errorf("commands:\n%s\nwant e2fsck and resize2fs, no mkfs", cmds)
	}
}

func TestNodeStageInFlight(t *testing.T) {
	e := newNodeEnv(t)
	e.fake.AddDisk(testUUID, gi)
	release, err := e.d.inflight.acquire(nodeKey("vol-1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.d.NodeStageVolume(context.Background(), e.stageReq(mountCap("")))
	wantCode(t, err, codes.Aborted)
	release()
	if _, err := e.d.NodeStageVolume(context.Background(), e.stageReq(mountCap(""))); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestNodeUnstage(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	// Nothing there: success.
	if _, err := e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: e.staging()}); err != nil {
		t.Fatalf("unstage of a missing path: %v", err)
	}
	e.fake.AddDisk(testUUID, gi)
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap(""))); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: e.staging()}); err != nil {
			t.Fatalf("unstage %d: %v", i, err)
		}
	}
	if m := e.mountsAt(e.staging()); len(m) != 0 {
		t.Errorf("still mounted: %q", m)
	}
	_, err := e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{StagingTargetPath: e.staging()})
	wantCode(t, err, codes.InvalidArgument, "volume_id")
	_, err = e.d.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v"})
	wantCode(t, err, codes.InvalidArgument, "staging_target_path")
}

func TestNodePublishMount(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, gi)

	_, err := e.d.NodePublishVolume(ctx, e.publishReq(mountCap(""), false))
	wantCode(t, err, codes.FailedPrecondition, "not staged")

	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap(""))); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := e.d.NodePublishVolume(ctx, e.publishReq(mountCap("", "noatime"), false)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	m := e.mountsAt(e.target())
	dev := e.fake.Disk(testUUID).Path
	if len(m) != 1 || !strings.HasPrefix(m[0], dev+" ") || !strings.Contains(m[0], "bind") || !strings.Contains(m[0], "noatime") {
		t.Errorf("mounts at target: %q, want one bind mount of %s with noatime", m, dev)
	}
	// Same target, read-only now: incompatible.
	_, err = e.d.NodePublishVolume(ctx, e.publishReq(mountCap(""), true))
	wantCode(t, err, codes.AlreadyExists, "readonly=false")

	// Read-only publish elsewhere.
	r := e.publishReq(mountCap(""), true)
	r.TargetPath = filepath.Join(e.dir, "pods", "ro")
	if _, err := e.d.NodePublishVolume(ctx, r); err != nil {
		t.Fatal(err)
	}
	if m := e.mountsAt(r.TargetPath); len(m) != 1 || !slices.Contains(strings.Split(strings.Fields(m[0])[len(strings.Fields(m[0]))-1], ","), "ro") {
		t.Errorf("mounts at the read-only target: %q, want ro", m)
	}

	// Unpublish removes the target; again is success. The read-only
	// publish stays read-only (and so idempotent).
	for i := range 2 {
		if _, err := e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: e.target()}); err != nil {
			t.Fatalf("unpublish %d: %v", i, err)
		}
	}
	if _, err := e.d.mounter.Inspect(e.target()); status.Code(toStatus(err)) != codes.NotFound {
		t.Errorf("target after unpublish: %v, want it gone", err)
	}
	if _, err := e.d.NodePublishVolume(ctx, r); err != nil {
		t.Errorf("read-only publish again: %v", err)
	}
}

func TestNodePublishTargetHoldsSomethingElse(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, gi)
	e.fake.AddDisk(otherUUID, gi)
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap(""))); err != nil {
		t.Fatal(err)
	}
	// Something else is mounted at the target.
	if err := e.fake.BindMount(e.fake.Disk(otherUUID).Path, e.target(), false, nil); err != nil {
		t.Fatal(err)
	}
	_, err := e.d.NodePublishVolume(ctx, e.publishReq(mountCap(""), false))
	wantCode(t, err, codes.AlreadyExists, "already has")
}

func TestNodePublishBlock(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, 3*gi)
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(blockCap())); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := e.d.NodePublishVolume(ctx, e.publishReq(blockCap(), false)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	info, err := e.d.mounter.Inspect(e.target())
	if err != nil || !info.IsBlockDevice || info.IsDir {
		t.Fatalf("target: %+v, %v; want a file bound to the device", info, err)
	}
	if m := e.mountsAt(e.target()); len(m) != 1 {
		t.Errorf("mounts at target: %q, want one", m)
	}
	if d := e.fake.Disk(testUUID); d.Formats != 0 || d.FSType != "" {
		t.Errorf("block volume got a filesystem: %+v", d)
	}
	st, err := e.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-1", VolumePath: e.target()})
	if err != nil || len(st.Usage) != 1 || st.Usage[0].Total != 3*gi || st.Usage[0].Unit != csi.VolumeUsage_BYTES {
		t.Errorf("block stats: %v, %v; want %d bytes", st, err, 3*gi)
	}
	exp, err := e.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: e.target(), VolumeCapability: blockCap()})
	if err != nil || exp.CapacityBytes != 3*gi {
		t.Errorf("block expand: %v, %v; want the device's size and nothing else", exp, err)
	}

	// Another disk's publish onto the same target file.
	e.fake.AddDisk(otherUUID, gi)
	r := e.publishReq(blockCap(), false)
	r.VolumeId, r.PublishContext[PublishContextDiskUUID] = "vol-2", otherUUID
	_, err = e.d.NodePublishVolume(ctx, r)
	wantCode(t, err, codes.AlreadyExists, "another block device")

	if _, err := e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: e.target()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.mounter.Inspect(e.target()); err == nil {
		t.Error("the target file is still there after unpublish")
	}
}

// TestNodePublishSingleWriter: a ReadWriteOncePod volume is published at one
// target; ReadWriteOnce ones at as many as the node's pods want.
func TestNodePublishSingleWriter(t *testing.T) {
	for _, c := range []struct {
		name string
		cap  func() *csi.VolumeCapability
	}{{"mount", func() *csi.VolumeCapability { return mountCap("") }}, {"block", blockCap}} {
		t.Run(c.name, func(t *testing.T) {
			e := newNodeEnv(t)
			ctx := context.Background()
			e.fake.AddDisk(testUUID, gi)
			withMode := func(m csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
				vc := c.cap()
				vc.AccessMode.Mode = m
				return vc
			}
			if _, err := e.d.NodeStageVolume(ctx, e.stageReq(withMode(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER))); err != nil {
				t.Fatal(err)
			}
			first := e.publishReq(withMode(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), false)
			for i := range 2 { // idempotent
				if _, err := e.d.NodePublishVolume(ctx, first); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			second := e.publishReq(withMode(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER), false)
			second.TargetPath = filepath.Join(e.dir, "pods", "second")
			_, err := e.d.NodePublishVolume(ctx, second)
			wantCode(t, err, codes.FailedPrecondition, "already published at", "SINGLE_NODE_SINGLE_WRITER")

			for _, m := range []csi.VolumeCapability_AccessMode_Mode{
				csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
			} {
				r := e.publishReq(withMode(m), false)
				r.TargetPath = filepath.Join(e.dir, "pods", m.String())
				if _, err := e.d.NodePublishVolume(ctx, r); err != nil {
					t.Errorf("second target with %s: %v", m, err)
				}
			}
			// Once the first is unpublished, the single writer may go elsewhere.
			e2 := newNodeEnv(t)
			e2.fake.AddDisk(testUUID, gi)
			e2.d.NodeStageVolume(ctx, e2.stageReq(withMode(csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)))
			first.StagingTargetPath, first.TargetPath = e2.staging(), e2.target()
			if _, err := e2.d.NodePublishVolume(ctx, first); err != nil {
				t.Fatal(err)
			}
			if _, err := e2.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: e2.target()}); err != nil {
				t.Fatal(err)
			}
			second.StagingTargetPath = e2.staging()
			second.TargetPath = filepath.Join(e2.dir, "pods", "second")
			if _, err := e2.d.NodePublishVolume(ctx, second); err != nil {
				t.Errorf("single writer after the first target was unpublished: %v", err)
			}
		})
	}
}

func TestNodeGetVolumeStats(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(e *nodeEnv) string // returns the volume path
		code     codes.Code
		abnormal bool
		msg      string
		usage    bool
	}{
		{
			name:  "mounted: bytes and inodes, normal",
			setup: func(e *nodeEnv) string { return e.target() },
			usage: true, msg: "mounted ext4",
		},
		{
			name: "filesystem went read-only: abnormal",
			setup: func(e *nodeEnv) string {
				e.fake.UpdateDisk(testUUID, func(d *nodetest.FakeDisk) { d.FSReadOnly = true })
				return e.target()
			},
			usage: true, abnormal: true, msg: "has become read-only",
		},
		{
			name: "mount gone: abnormal",
			setup: func(e *nodeEnv) string {
				if err := e.fake.Mounts.Unmount(e.target()); err != nil {
					panic(err)
				}
				return e.target()
			},
			abnormal: true, msg: "is not mounted",
		},
		{
			name:  "path does not exist: NotFound",
			setup: func(e *nodeEnv) string { return filepath.Join(e.dir, "nothing") },
			code:  codes.NotFound,
		},
		{
			name:  "no path: InvalidArgument",
			setup: func(e *nodeEnv) string { return "" },
			code:  codes.InvalidArgument,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newNodeEnv(t)
			ctx := context.Background()
			e.fake.AddDisk(testUUID, gi)
			if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap(""))); err != nil {
				t.Fatal(err)
			}
			if _, err := e.d.NodePublishVolume(ctx, e.publishReq(mountCap(""), false)); err != nil {
				t.Fatal(err)
			}
			e.fake.UpdateDisk(testUUID, func(d *nodetest.FakeDisk) { d.UsedBytes = 1 << 20 })
			path := tt.setup(e)
			rsp, err := e.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-1", VolumePath: path})
			if tt.code != codes.OK {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := rsp.GetVolumeCondition()
			if c.GetAbnormal() != tt.abnormal || !strings.Contains(c.GetMessage(), tt.msg) {
				t.Errorf("condition %v, want abnormal=%t and a message saying %q", c, tt.abnormal, tt.msg)
			}
			if !tt.usage {
				return
			}
			if len(rsp.Usage) != 2 {
				t.Fatalf("usage %v, want bytes and inodes", rsp.Usage)
			}
			b, in := rsp.Usage[0], rsp.Usage[1]
			if b.Unit != csi.VolumeUsage_BYTES || b.Total != gi || b.Used != 1<<20 || b.Available != gi-1<<20 {
				t.Errorf("bytes %v", b)
			}
			if in.Unit != csi.VolumeUsage_INODES || in.Total == 0 || in.Used+in.Available != in.Total {
				t.Errorf("inodes %v", in)
			}
		})
	}
}

func TestNodeExpandVolume(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, gi)
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(mountCap(""))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.NodePublishVolume(ctx, e.publishReq(mountCap(""), false)); err != nil {
		t.Fatal(err)
	}
	e.fake.UpdateDisk(testUUID, func(d *nodetest.FakeDisk) { d.Size = 2 * gi })
	req := &csi.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: e.target(), CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gi}}

	// Without CAP_SYS_RESOURCE a mounted ext4 can't grow: a clear error.
	e.fake.DenyOnlineResize = true
	_, err := e.d.NodeExpandVolume(ctx, req)
	wantCode(t, err, codes.FailedPrecondition, "CAP_SYS_RESOURCE")

	e.fake.DenyOnlineResize = false
	rsp, err := e.d.NodeExpandVolume(ctx, req)
	if err != nil || rsp.CapacityBytes != 2*gi {
		t.Fatalf("expand: %v, %v", rsp, err)
	}
	if d := e.fake.Disk(testUUID); d.FSSize != 2*gi {
		t.Errorf("filesystem %d bytes, want %d", d.FSSize, 2*gi)
	}
	// The disk has not grown as much as asked.
	req.CapacityRange.RequiredBytes = 3 * gi
	_, err = e.d.NodeExpandVolume(ctx, req)
	wantCode(t, err, codes.FailedPrecondition, "has not grown")

	_, err = e.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-1", VolumePath: filepath.Join(e.dir, "no-such-path")})
	wantCode(t, err, codes.NotFound)
	_, err = e.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "vol-1"})
	wantCode(t, err, codes.InvalidArgument, "volume_path")
	_, err = e.d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumePath: e.target()})
	wantCode(t, err, codes.InvalidArgument, "volume_id")
}

func TestNodeCapabilitiesAndInfo(t *testing.T) {
	e := newNodeEnv(t)
	caps, err := e.d.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.NodeServiceCapability_RPC_Type
	for _, c := range caps.Capabilities {
		got = append(got, c.GetRpc().GetType())
	}
	want := []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME, csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_VOLUME_CONDITION, csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	}
	if !slices.Equal(got, want) {
		t.Errorf("capabilities %v, want %v", got, want)
	}
	info, err := e.d.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	if err != nil || info.NodeId != "4213a2b4-0000-1111-2222-333344445555" || info.MaxVolumesPerNode != DefaultMaxVolumesPerNode {
		t.Errorf("NodeGetInfo = %v, %v", info, err)
	}
}

// TestNodeInputEdges: what kubelet or a publish context could hand the
// node plugin that must not reach mount(8): relative paths (taken from
// the plugin's working directory) and an NFS export that mount would read
// as an option. Refused InvalidArgument, nothing mounted.
func TestNodeInputEdges(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, 1<<30)

	req := e.stageReq(mountCap("ext4"))
	req.StagingTargetPath = "staging"
	_, err := e.d.NodeStageVolume(ctx, req)
	wantCode(t, err, codes.InvalidArgument, `staging_target_path "staging" is not an absolute path`)

	pub := e.publishReq(mountCap("ext4"), false)
	pub.TargetPath = "pods/target"
	_, err = e.d.NodePublishVolume(ctx, pub)
	wantCode(t, err, codes.InvalidArgument, "target_path", "not an absolute path")
	pub = e.publishReq(mountCap("ext4"), false)
	pub.StagingTargetPath = "../staging"
	_, err = e.d.NodePublishVolume(ctx, pub)
	wantCode(t, err, codes.InvalidArgument, "staging_target_path", "not an absolute path")
	_, err = e.d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "vol-1", VolumePath: "target"})
	wantCode(t, err, codes.NotFound, "volume_path", "not an absolute path")

	rwx := mountCap("nfs4")
	rwx.AccessMode.Mode = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
	for _, source := range []string{"-oremount,rw:/x", "host:relative", ":/share", "host:/a\nb"} {
		_, err := e.d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: "file:vol-2", TargetPath: e.target(), VolumeCapability: rwx,
			PublishContext: map[string]string{PublishContextNFSv4AccessPoint: source}})
		wantCode(t, err, codes.InvalidArgument, "invalid NFS export")
	}
	if m := e.mountsAt(e.target()); len(m) != 0 {
		t.Errorf("mounted at the target: %v", m)
	}
	if m := e.mountsAt(e.staging()); len(m) != 0 {
		t.Errorf("mounted at the staging path: %v", m)
	}
}

// TestNodeStageAfterDeviceChange: the disk was hot-removed and came back
// as another device (a new name and number; its link moved). The staging
// mount and the pod's bind of it are of the dead device: NodeStage
// unmounts the stale staging mount and stages the new device (not
// formatted: it holds the filesystem), NodePublish binds the live staging
// mount again. Before, both answered AlreadyExists forever.
func TestNodeStageAfterDeviceChange(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, 1<<30)
	c := mountCap("ext4")
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(c)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.NodePublishVolume(ctx, e.publishReq(c, false)); err != nil {
		t.Fatal(err)
	}
	moved := e.fake.ReplaceDevice(testUUID)

	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(c)); err != nil {
		t.Fatalf("stage after the device changed: %v", err)
	}
	if m := e.mountsAt(e.staging()); len(m) != 1 || !strings.HasPrefix(m[0], moved.Path+" ") {
		t.Errorf("staging mounts %v, want only the new device %s", m, moved.Path)
	}
	if d := e.fake.Disk(testUUID); d.Formats != 1 {
		t.Errorf("the disk was formatted %d times, want once (at the first stage)", d.Formats)
	}
	if _, err := e.d.NodePublishVolume(ctx, e.publishReq(c, false)); err != nil {
		t.Fatalf("publish after the device changed: %v", err)
	}
	if m := e.mountsAt(e.target()); len(m) != 1 || !strings.HasPrefix(m[0], moved.Path+" ") {
		t.Errorf("target mounts %v, want one bind of the staged filesystem on %s", m, moved.Path)
	}
	// Staged and published as they are now: both calls are no-ops.
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(c)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.NodePublishVolume(ctx, e.publishReq(c, false)); err != nil {
		t.Fatal(err)
	}

	// Another disk's filesystem at the staging path is not stale: refused.
	other := e.fake.AddDisk("6000c298-aaaa-bbbb-cccc-ddddeeeeffff", 1<<30)
	e.fake.UpdateDisk(other.UUID, func(d *nodetest.FakeDisk) { d.FSType, d.FSSize = "ext4", d.Size })
	dir := filepath.Join(e.dir, "staging-2")
	if err := e.fake.Mounts.Mount(other.Path, dir, "ext4", nil); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o750)
	req := e.stageReq(c)
	req.StagingTargetPath = dir
	_, err := e.d.NodeStageVolume(ctx, req)
	wantCode(t, err, codes.AlreadyExists, "already has "+other.Path+" mounted")
}

// TestNodeUnstageBlockWhilePublished: a raw block volume leaves nothing
// mounted at its staging path; its unstage is refused all the same while
// the device is bound at a pod's target (the staging records the disk),
// and goes once unpublished, forgetting the record.
func TestNodeUnstageBlockWhilePublished(t *testing.T) {
	e := newNodeEnv(t)
	ctx := context.Background()
	e.fake.AddDisk(testUUID, 1<<30)
	os.MkdirAll(e.staging(), 0o750)
	if _, err := e.d.NodeStageVolume(ctx, e.stageReq(blockCap())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.NodePublishVolume(ctx, e.publishReq(blockCap(), false)); err != nil {
		t.Fatal(err)
	}
	unstage := &csi.NodeUnstageVolumeRequest{VolumeId: "vol-1", StagingTargetPath: e.staging()}
	_, err := e.d.NodeUnstageVolume(ctx, unstage)
	wantCode(t, err, codes.FailedPrecondition, "still published at "+e.target())
	if _, err := e.d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "vol-1", TargetPath: e.target()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.NodeUnstageVolume(ctx, unstage); err != nil {
		t.Fatalf("unstage once unpublished: %v", err)
	}
	if entries, _ := os.ReadDir(e.staging()); len(entries) != 0 {
		t.Errorf("staging directory after unstage holds %v, want nothing", entries)
	}
	if _, err := e.d.NodeUnstageVolume(ctx, unstage); err != nil {
		t.Fatalf("unstage again: %v", err)
	}
}
