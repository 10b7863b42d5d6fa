package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// A raw block volume's staging leaves nothing in the mount table (publish
// binds the device itself), so NodeUnstage could not tell which device a
// pod still holds. Staging records the disk's UUID in a small file in the
// staging directory (the CO's, made for the volume); unstaging reads it
// and forgets it.

// stagedDiskFile is the record's name in the staging directory.
const stagedDiskFile = "vsphere-csi-disk"

// RecordStagedDisk notes in staging that the raw block volume of disk
// diskUUID is staged there.
func RecordStagedDisk(staging, diskUUID string) error {
	id, err := NormalizeDiskUUID(diskUUID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return fmt.Errorf("creating the staging directory %s: %w", staging, err)
	}
	if err := os.WriteFile(filepath.Join(staging, stagedDiskFile), []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("recording the staged disk in %s: %w", staging, err)
	}
	return nil
}

// StagedDisk returns the disk UUID RecordStagedDisk noted in staging; ""
// when none is.
func StagedDisk(staging string) (string, error) {
	b, err := os.ReadFile(filepath.Join(staging, stagedDiskFile))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the staged disk of %s: %w", staging, err)
	}
	return NormalizeDiskUUID(strings.TrimSpace(string(b)))
}

// ForgetStagedDisk removes the record (none: success).
func ForgetStagedDisk(staging string) error {
	err := os.Remove(filepath.Join(staging, stagedDiskFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forgetting the staged disk of %s: %w", staging, err)
	}
	return nil
}

// AttachedDevice is the device node of the disk with that UUID when its
// link is there now, without waiting (FindDevice waits for it); "" when
// the disk is not attached.
func AttachedDevice(byIDDir, diskUUID string) (string, error) {
	id, err := NormalizeDiskUUID(diskUUID)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(DeviceLink(byIDDir, id))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return p, err
}
