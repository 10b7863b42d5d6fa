package driver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter/vcentertest"
)

// Fuzz targets of the CSI requests' validation (issue 23): capacity
// ranges, volume capabilities, topology requirements, publish contexts and
// the List calls' paging. Each checks what the answer promises, not only
// that nothing panics. make test runs the seeds; make fuzz explores.

// wantCodeIn fails unless err's gRPC code is one of codes.
func wantCodeIn(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	for _, c := range want {
		if status.Code(err) == c {
			return
		}
	}
	t.Fatalf("%s: %v, want one of %v", what, err, want)
}

// FuzzCapacityRange: the size CreateVolume (capacityBytes),
// ControllerExpandVolume (expandBytes) and NodeExpandVolume
// (nodeExpandBytes) take from a capacity range is within the range, a whole
// number of MiB no larger than vSphere's largest disk for the controller;
// a range refused is one no such size satisfies, refused with OutOfRange
// (InvalidArgument for a missing range where one is required).
func FuzzCapacityRange(f *testing.F) {
	f.Add(int64(0), int64(0), false)
	f.Add(int64(0), int64(0), true)
	f.Add(gib, int64(0), false)
	f.Add(gib+1, 2*gib, false)
	f.Add(mib+1, mib+2, false)
	f.Add(int64(0), int64(100), false)
	f.Add(int64(MaxVolumeBytes), int64(0), false)
	f.Add(int64(MaxVolumeBytes+1), int64(0), false)
	f.Add(int64(-1), int64(0), false)
	f.Add(int64(0), int64(-5), false)
	f.Add(int64(1<<63-1), int64(1<<63-1), false)
	f.Fuzz(func(t *testing.T, req, limit int64, noRange bool) {
		var r *csi.CapacityRange
		if !noRange {
			r = &csi.CapacityRange{RequiredBytes: req, LimitBytes: limit}
		} else {
			req, limit = 0, 0
		}
		what := fmt.Sprintf("range %v", r)
		// A size in the range exists: a whole MiB, positive, at least req,
		// at most limit (when set) and at most MaxVolumeBytes.
		lo := max(req, 1)
		hi := int64(MaxVolumeBytes)
		if limit > 0 {
			hi = min(hi, limit)
		}
		satisfiable := req >= 0 && limit >= 0 && lo <= hi && (lo+mib-1)/mib*mib <= hi

		size, err := capacityBytes(r)
		switch {
		case err != nil:
			wantCodeIn(t, what+": capacityBytes", err, codes.OutOfRange)
			if satisfiable {
				t.Fatalf("%s: refused (%v), though a size satisfies it", what, err)
			}
		case !satisfiable:
			t.Fatalf("%s: size %d, though no size satisfies it", what, size)
		case size <= 0 || size%mib != 0 || size < req || (limit > 0 && size > limit) || size > MaxVolumeBytes:
			t.Fatalf("%s: size %d is not a whole number of MiB within the range and the largest disk", what, size)
		case req > 0 && size-req >= mib:
			t.Fatalf("%s: size %d is more than rounding req up to a MiB", what, size)
		case req == 0 && size > defaultCapacity:
			t.Fatalf("%s: size %d is more than the default %d", what, size, defaultCapacity)
		}

		esize, eerr := expandBytes(r)
		switch {
		case req == 0 && limit == 0:
			wantCodeIn(t, what+": expandBytes without a range", eerr, codes.InvalidArgument)
		case (eerr == nil) != (err == nil) || esize != size:
			t.Fatalf("%s: expandBytes %d, %v; capacityBytes %d, %v: they must agree", what, esize, eerr, size, err)
		}

		nsize, nerr := nodeExpandBytes(r)
		switch {
		case nerr != nil:
			wantCodeIn(t, what+": nodeExpandBytes", nerr, codes.OutOfRange)
			if req >= 0 && limit >= 0 && (limit == 0 || req <= limit) {
				t.Fatalf("%s: NodeExpandVolume refuses a well-formed range: %v", what, nerr)
			}
		case nsize < 0 || nsize != req || (limit > 0 && nsize > limit):
			t.Fatalf("%s: NodeExpandVolume asks for %d bytes", what, nsize)
		}
	})
}

// fuzzCapability builds a capability from fuzz input: access 0 none, 1 block,
// 2 mount, 3 a nil capability; a negative mode no access mode.
func fuzzCapability(mode int32, access uint8, fsType string, flags []string) *csi.VolumeCapability {
	c := &csi.VolumeCapability{}
	switch access % 4 {
	case 1:
		c.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	case 2:
		c.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: flags}}
	case 3:
		return nil
	}
	if mode >= 0 {
		c.AccessMode = &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(mode)}
	}
	return c
}

// FuzzVolumeCapability: validateCapability accepts exactly the supported
// combinations (a single-node mode as block or as a supported filesystem;
// a multi-node mode as an NFS mount), refuses the rest with
// InvalidArgument, and the node then mounts what it accepted as a
// filesystem it supports; validateCapabilities says file exactly when a
// multi-node mode is asked, and never mixes the two kinds.
func FuzzVolumeCapability(f *testing.F) {
	sw, mw := int32(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), int32(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	f.Add(sw, uint8(2), "ext4", sw, uint8(0), "", "noatime", false)
	f.Add(sw, uint8(1), "", sw, uint8(2), "xfs", "", true)
	f.Add(mw, uint8(2), "nfs4", int32(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY), uint8(2), "NFS", "vers=3\nnolock", true)
	f.Add(mw, uint8(1), "", sw, uint8(2), "ext4", "", true)
	f.Add(mw, uint8(2), "ext4", sw, uint8(2), "ext4", "", true)
	f.Add(sw, uint8(2), "nfs", int32(-1), uint8(2), "", "", true)
	f.Add(int32(0), uint8(0), "", int32(99), uint8(3), "btrfs", "ro", true)
	f.Fuzz(func(t *testing.T, mode1 int32, access1 uint8, fs1 string, mode2 int32, access2 uint8, fs2, flags string, two bool) {
		var fl []string
		if flags != "" {
			fl = strings.Split(flags, "\n")
		}
		caps := []*csi.VolumeCapability{fuzzCapability(mode1, access1, fs1, fl)}
		if two {
			caps = append(caps, fuzzCapability(mode2, access2, fs2, fl))
		}
		valid := 0
		multi, single := false, false
		for _, c := range caps {
			err := validateCapability(c)
			if err != nil {
				wantCodeIn(t, fmt.Sprintf("capability %v", c), err, codes.InvalidArgument)
				continue
			}
			valid++
			checkAcceptedCapability(t, c)
			if multiNode(c) {
				multi = true
			} else {
				single = true
			}
			// Mount flags never decide whether a capability is valid.
			if m := c.GetMount(); m != nil {
				bare := fuzzCapability(int32(c.GetAccessMode().GetMode()), 2, m.GetFsType(), nil)
				if err := validateCapability(bare); err != nil {
					t.Fatalf("capability %v accepted with mount flags, refused without: %v", c, err)
				}
			}
		}
		file, err := validateCapabilities(caps)
		switch {
		case err != nil:
			wantCodeIn(t, fmt.Sprintf("capabilities %v", caps), err, codes.InvalidArgument)
			if valid == len(caps) && !(multi && single) {
				t.Fatalf("capabilities %v: each is valid and of one kind, yet refused: %v", caps, err)
			}
		case valid != len(caps):
			t.Fatalf("capabilities %v accepted, though one is refused alone", caps)
		case multi && single:
			t.Fatalf("capabilities %v accepted, though they mix a multi-node and a single-node mode", caps)
		case file != multi:
			t.Fatalf("capabilities %v: file = %t, want %t (a multi-node mode makes a file volume)", caps, file, multi)
		}
	})
}

// checkAcceptedCapability: what validateCapability accepted is a mode this
// driver serves, with an access type, on a filesystem the node mounts.
func checkAcceptedCapability(t *testing.T, c *csi.VolumeCapability) {
	t.Helper()
	if c == nil || (c.GetBlock() == nil) == (c.GetMount() == nil) || c.GetAccessMode() == nil {
		t.Fatalf("capability %v accepted without exactly one access type and a mode", c)
	}
	switch mode := c.GetAccessMode().GetMode(); mode {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		if multiNode(c) {
			t.Fatalf("capability %v: single-node mode %s counted as multi-node", c, mode)
		}
		if c.GetMount() != nil && !node.SupportedFSType(fsTypeOf(c)) {
			t.Fatalf("capability %v accepted: the node would mount it as %q, which it does not support", c, fsTypeOf(c))
		}
	case csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if !multiNode(c) || c.GetBlock() != nil {
			t.Fatalf("capability %v: multi-node mode %s accepted as a block volume or not counted as multi-node", c, mode)
		}
		fs := nfsFSType(c)
		if (fs != node.FSTypeNFS && fs != node.FSTypeNFS4) || (fs == node.FSTypeNFS) != strings.EqualFold(c.GetMount().GetFsType(), "nfs") {
			t.Fatalf("capability %v: the node would mount the share as %q", c, fs)
		}
	default:
		t.Fatalf("capability %v: access mode %s accepted", c, mode)
	}
}

// topologyRequirement builds a requirement from fuzz input: topologies
// separated by '|', a topology's key:value pairs by ';' (values may hold
// ',' and '='); the first preferred of them are preferred, the rest
// requisite. A '~' stands for the topology key prefix, so that the fuzzer
// reaches values that look like other keys.
func topologyRequirement(spec string, preferred uint8) (*csi.TopologyRequirement, []map[string]string) {
	r := &csi.TopologyRequirement{}
	var segs []map[string]string
	for i, top := range strings.Split(strings.ReplaceAll(spec, "~", TopologyKeyPrefix), "|") {
		seg := map[string]string{}
		for _, kv := range strings.Split(top, ";") {
			if k, v, ok := strings.Cut(kv, ":"); ok {
				seg[TopologyKeyPrefix+k] = v
			} else if kv != "" {
				seg[kv] = "" // a key without the prefix
			}
		}
		segs = append(segs, seg)
		if i < int(preferred) {
			r.Preferred = append(r.Preferred, &csi.Topology{Segments: seg})
		} else {
			r.Requisite = append(r.Requisite, &csi.Topology{Segments: seg})
		}
	}
	return r, segs
}

// FuzzTopologyRequirement: requestedSegments lists each distinct non-empty
// segment of the requirement once, preferred first, none lost and none
// made up; a datastore is eligible for a segment only when one of its
// segments matches it (every requested key ours, every value the same).
func FuzzTopologyRequirement(f *testing.F) {
	f.Add("k8s-zone:zone-a|k8s-zone:zone-b", uint8(1))
	f.Add("k8s-zone:zone-a;k8s-region:r1|k8s-region:r1;k8s-zone:zone-a|", uint8(0))
	f.Add("a:b,c=d|a:b;c:d", uint8(2))
	f.Add("zone|k8s-zone:", uint8(1))
	f.Add("k8s-region:r1,~k8s-zone=a|k8s-zone:a;k8s-region:r1", uint8(1))
	f.Fuzz(func(t *testing.T, spec string, preferred uint8) {
		r, segs := topologyRequirement(spec, preferred)
		var want []map[string]string
		for _, s := range segs {
			if len(s) > 0 && !containsSegment(want, s) {
				want = append(want, s)
			}
		}
		got := requestedSegments(r)
		if len(got) != len(want) {
			t.Fatalf("requirement %v: requested segments %v, want %v", r, got, want)
		}
		for i := range got {
			if !maps.Equal(got[i], want[i]) {
				t.Fatalf("requirement %v: requested segment %d is %v, want %v", r, i, got[i], want[i])
			}
		}

		// A datastore in each segment (as categories), one in none.
		d := &Driver{opts: Options{TopologyCategories: []string{"k8s-zone"}}}
		var all []vcenter.Datastore
		for i, s := range segs {
			cats := map[string]string{}
			ours := true
			for k, v := range s {
				cat, ok := strings.CutPrefix(k, TopologyKeyPrefix)
				ours = ours && ok
				cats[cat] = v
			}
			if ours {
				all = append(all, vcenter.Datastore{ID: fmt.Sprintf("ds-%d", i), Topology: []map[string]string{cats}})
			}
		}
		all = append(all, vcenter.Datastore{ID: "ds-nowhere"})
		for _, w := range got {
			for _, ds := range d.eligible(all, w) {
				in := false
				for _, seg := range ds.Topology {
					in = in || matches(seg, w)
				}
				if ds.Reachable != in {
					t.Fatalf("segment %v: datastore %s (in %v) eligible = %t", w, ds.ID, ds.Topology, ds.Reachable)
				}
				if ds.ID == "ds-nowhere" && ds.Reachable {
					t.Fatalf("segment %v: a datastore in no segment is eligible", w)
				}
			}
		}
	})
}

func containsSegment(list []map[string]string, s map[string]string) bool {
	for _, x := range list {
		if maps.Equal(x, s) {
			return true
		}
	}
	return false
}

// FuzzPublishContext: what NodeStageVolume and NodePublishVolume read from
// the publish context. A file volume (by its ID or its access point) is
// mounted from an export that mount(8) reads as server:/path and never as
// an option; a block volume's disk UUID is one the node can look up; a
// context that has neither is refused with InvalidArgument.
func FuzzPublishContext(f *testing.F) {
	f.Add("6000c29d-0000-4000-8000-000000000001", "", "6000C29D-1111-2222-3333-444455556666")
	f.Add("file:6000c29d-0000-4000-8000-000000000002", "10.0.0.1:/vsanfs/pvc-1", "")
	f.Add("vol", "-oremount,rw:/x", "")
	f.Add("file:x", "", "")
	f.Add("vol", "server", "../../etc")
	f.Add("vol", ":/", "")
	f.Fuzz(func(t *testing.T, volID, accessPoint, diskUUID string) {
		pc := map[string]string{PublishContextNFSv4AccessPoint: accessPoint, PublishContextDiskUUID: diskUUID}
		file := fileOnNode(volID, pc)
		if file != (isFileVolume(volID) || accessPoint != "") {
			t.Fatalf("volume %q, access point %q: file = %t", volID, accessPoint, file)
		}
		if file {
			src, err := publishedNFSExport(pc)
			if err != nil {
				wantCodeIn(t, fmt.Sprintf("access point %q", accessPoint), err, codes.InvalidArgument)
				return
			}
			host, _, ok := strings.Cut(src, ":/")
			if src != accessPoint || !ok || host == "" || strings.HasPrefix(src, "-") {
				t.Fatalf("access point %q accepted as export %q: mount(8) would not read it as server:/path", accessPoint, src)
			}
			if err := node.CheckNFSExport(src); err != nil {
				t.Fatalf("access point %q accepted here, refused by the node's mount: %v", accessPoint, err)
			}
			return
		}
		uuid, err := publishedDiskUUID(pc)
		if err != nil {
			wantCodeIn(t, fmt.Sprintf("disk UUID %q", diskUUID), err, codes.InvalidArgument)
			return
		}
		if _, err := node.NormalizeDiskUUID(uuid); uuid != diskUUID || err != nil {
			t.Fatalf("disk UUID %q accepted as %q, which the node can't look up: %v", diskUUID, uuid, err)
		}
	})
}

// FuzzListPaging: listPaging reads max_entries and a starting token as the
// offset this driver hands out (anything else: Aborted; a negative
// max_entries: InvalidArgument). Paged through, ListVolumes and
// ListSnapshots list every entry once, pages no larger than asked; a token
// past the last entry is Aborted, one within the list starts there.
func FuzzListPaging(f *testing.F) {
	f.Add(uint8(5), int32(2), "")
	f.Add(uint8(0), int32(0), "0")
	f.Add(uint8(3), int32(1), "3")
	f.Add(uint8(3), int32(0), "4")
	f.Add(uint8(7), int32(-1), "x")
	f.Add(uint8(2), int32(3), "-1")
	f.Add(uint8(2), int32(1<<31-1), "+1")
	f.Add(uint8(1), int32(1), "99999999999999999999")
	f.Fuzz(func(t *testing.T, n uint8, maxEntries int32, token string) {
		offset, limit, err := listPaging(maxEntries, token)
		parsed, perr := strconv.ParseInt(token, 10, 64)
		tokenOK := token == "" || (perr == nil && parsed >= 0)
		switch {
		case maxEntries < 0:
			wantCodeIn(t, fmt.Sprintf("max_entries %d", maxEntries), err, codes.InvalidArgument)
		case !tokenOK:
			wantCodeIn(t, fmt.Sprintf("token %q", token), err, codes.Aborted)
		case err != nil:
			t.Fatalf("max_entries %d, token %q: %v", maxEntries, token, err)
		case limit != int64(maxEntries) || (token != "" && offset != parsed) || (token == "" && offset != 0):
			t.Fatalf("max_entries %d, token %q: offset %d, limit %d", maxEntries, token, offset, limit)
		}

		ctx := context.Background()
		vc := vcentertest.NewFake()
		d, derr := NewDriver(Options{Mode: ModeController, Version: "fuzz"}, vc, nil)
		if derr != nil {
			t.Fatal(derr)
		}
		count := int(n % 24)
		var vols, snaps []string
		for i := range count {
			v, err := vc.CreateVolume(ctx, vcenter.CreateSpec{Name: fmt.Sprintf("pvc-%d", i), CapacityBytes: mib, DatastoreIDs: []string{"ds-other"}})
			if err != nil {
				t.Fatal(err)
			}
			vols = append(vols, v.ID)
			s, err := vc.CreateSnapshot(ctx, v.ID, "snap")
			if err != nil {
				t.Fatal(err)
			}
			snaps = append(snaps, snapshotID(v.ID, s.ID))
		}
		pageSize := int32(uint32(maxEntries) % 8)
		listVolumes := func(tok string, max int32) ([]string, string, error) {
			resp, err := d.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: max, StartingToken: tok})
			var ids []string
			for _, e := range resp.GetEntries() {
				ids = append(ids, e.GetVolume().GetVolumeId())
			}
			return ids, resp.GetNextToken(), err
		}
		listSnapshots := func(tok string, max int32) ([]string, string, error) {
			resp, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{MaxEntries: max, StartingToken: tok})
			var ids []string
			for _, e := range resp.GetEntries() {
				ids = append(ids, e.GetSnapshot().GetSnapshotId())
			}
			return ids, resp.GetNextToken(), err
		}
		for _, l := range []struct {
			what string
			all  []string
			list func(string, int32) ([]string, string, error)
		}{{"ListVolumes", vols, listVolumes}, {"ListSnapshots", snaps, listSnapshots}} {
			// The order is the list's own: read it whole first.
			whole, next, werr := l.list("", 0)
			if werr != nil || next != "" || strings.Join(slices.Sorted(slices.Values(whole)), " ") != strings.Join(slices.Sorted(slices.Values(l.all)), " ") {
				t.Fatalf("%s of %d entries at once: %v, next %q, %v", l.what, len(l.all), whole, next, werr)
			}
			l.all = whole
			checkPaging(t, l.what, l.all, pageSize, l.list)
			if err != nil || token == "" {
				continue
			}
			// The fuzzed token itself.
			ids, _, lerr := l.list(token, pageSize)
			switch {
			case offset > int64(len(l.all)):
				wantCodeIn(t, fmt.Sprintf("%s from token %q of %d entries", l.what, token, len(l.all)), lerr, codes.Aborted)
			case lerr != nil:
				t.Fatalf("%s from token %q of %d entries: %v", l.what, token, len(l.all), lerr)
			case len(ids) > 0 && ids[0] != l.all[offset]:
				t.Fatalf("%s from token %q starts at %s, want %s", l.what, token, ids[0], l.all[offset])
			case len(ids) == 0 && offset < int64(len(l.all)):
				t.Fatalf("%s from token %q of %d entries: an empty page", l.what, token, len(l.all))
			}
		}
	})
}

// checkPaging pages through a List call from the start, pageSize at a time
// (0: no limit), and checks the pages cover all, once each, in order.
func checkPaging(t *testing.T, what string, all []string, pageSize int32, list func(string, int32) ([]string, string, error)) {
	t.Helper()
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > len(all)+1 {
			t.Fatalf("%s: more than %d pages of %d entries: the tokens go round", what, pages, len(all))
		}
		ids, next, err := list(token, pageSize)
		if err != nil {
			t.Fatalf("%s from token %q: %v", what, token, err)
		}
		if pageSize > 0 && len(ids) > int(pageSize) {
			t.Fatalf("%s: a page of %d entries, asked for %d at most", what, len(ids), pageSize)
		}
		if next != "" && len(ids) == 0 {
			t.Fatalf("%s: an empty page with next token %q", what, next)
		}
		got = append(got, ids...)
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(got, " ") != strings.Join(all, " ") {
		t.Fatalf("%s in pages of %d: %v, want each of %v once, in order", what, pageSize, got, all)
	}
}
