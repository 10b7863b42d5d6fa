package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"k8s.io/klog/v2"
)

// DefaultByIDDir is where udev puts the disks' by-id links.
const DefaultByIDDir = "/dev/disk/by-id"

// NormalizeDiskUUID turns a disk UUID as vCenter writes it
// ("6000C29d-...", with or without dashes or spaces, any case) into the
// 32 lowercase hex digits of its wwn-0x link.
func NormalizeDiskUUID(uuid string) (string, error) {
	s := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(uuid)))
	if len(s) != 32 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w %q: want 32 hexadecimal digits", ErrInvalidDiskUUID, uuid)
	}
	return s, nil
}

// DeviceLink is the by-id link of the disk with that (normalized) UUID.
func DeviceLink(byIDDir, normalizedUUID string) string {
	return filepath.Join(byIDDir, "wwn-0x"+normalizedUUID)
}

func (m *mounter) FindDevice(ctx context.Context, byIDDir, diskUUID string) (Device, error) {
	id, err := NormalizeDiskUUID(diskUUID)
	if err != nil {
		return Device{}, err
	}
	if byIDDir == "" {
		byIDDir = DefaultByIDDir
	}
	link := DeviceLink(byIDDir, id)
	start := time.Now()
	deadline := start.Add(m.opts.DeviceWait)
	pause := 25 * time.Millisecond
	var lastRescan time.Time
	for {
		_, err := os.Lstat(link)
		if err == nil {
			return m.checkDevice(link)
		}
		if !errors.Is(err, os.ErrNotExist) {
			return Device{}, fmt.Errorf("looking for %s: %w", link, err)
		}
		if time.Since(lastRescan) >= rescanEvery {
			m.rescanHosts()
			lastRescan = time.Now()
		}
		if time.Now().Add(pause).After(deadline) {
			return Device{}, fmt.Errorf("%w: no %s after %s (is the disk attached to this node VM, and disk.EnableUUID = TRUE in the VM's settings?)",
				ErrDeviceNotFound, link, time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return Device{}, fmt.Errorf("waiting for %s: %w", link, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(pause*2, m.opts.PollInterval)
	}
}

// checkDevice resolves the link and checks that it leads to a block device
// of non-zero size.
func (m *mounter) checkDevice(link string) (Device, error) {
	dev, err := filepath.EvalSymlinks(link)
	if err != nil {
		return Device{}, fmt.Errorf("%w: %s leads nowhere: %v", ErrDeviceNotFound, link, err)
	}
	st, err := m.sys.Stat(dev)
	if err != nil {
		return Device{}, fmt.Errorf("looking at %s (from %s): %w", dev, link, err)
	}
	if !st.IsBlock {
		return Device{}, fmt.Errorf("%w: %s (from %s)", ErrNotBlockDevice, dev, link)
	}
	size, err := m.sys.DeviceSize(dev)
	if err != nil {
		return Device{}, fmt.Errorf("reading the size of %s: %w", dev, err)
	}
	if size <= 0 {
		return Device{}, fmt.Errorf("%w: %s (from %s) has size 0: its backing is missing", ErrNotBlockDevice, dev, link)
	}
	return Device{Path: dev, Link: link, SizeBytes: size}, nil
}

// rescanHosts asks every SCSI host to look for new disks. Machines without
// SCSI hosts (or a sysfs we can't write) are not an error: the wait goes on.
func (m *mounter) rescanHosts() {
	scans, _ := filepath.Glob(filepath.Join(m.opts.SysDir, "class", "scsi_host", "host*", "scan"))
	for _, s := range scans {
		if err := os.WriteFile(s, []byte("- - -"), 0); err != nil {
			klog.V(4).InfoS("SCSI host rescan failed", "file", s, "err", err)
		}
	}
}

func (m *mounter) RescanDevice(ctx context.Context, dev string) (int64, error) {
	st, err := m.sys.Stat(dev)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrPathNotFound, dev)
	}
	if err != nil {
		return 0, fmt.Errorf("looking at %s: %w", dev, err)
	}
	if !st.IsBlock {
		return 0, fmt.Errorf("%w: %s", ErrNotBlockDevice, dev)
	}
	// A SCSI disk re-reads its capacity on "1" to device/rescan; other
	// devices (loop, virtio) have no such file and report their size as is.
	// Found by device number, this works for a file the device is bound
	// onto (a raw block volume's target) too.
	rescan := filepath.Join(m.opts.SysDir, "dev", "block",
		fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "device", "rescan")
	if err := os.WriteFile(rescan, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		klog.V(4).InfoS("Device rescan failed", "file", rescan, "err", err)
	}
	return m.sys.DeviceSize(dev)
}
