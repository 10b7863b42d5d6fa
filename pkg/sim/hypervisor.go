package sim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// hypervisor is the node side of an attach: what makes a disk appear in
// the node VM.
type hypervisor interface {
	// attach makes the data file visible to the node as a block device
	// linked at <byIDDir>/wwn-0x<diskUUID>.
	attach(volumeID, file, byIDDir, diskUUID string) error
	// detach undoes attach; not attached is success.
	detach(volumeID string) error
	// resize tells the device that its file grew.
	resize(volumeID string) error
	// closeAll detaches everything attach made.
	closeAll() error
	// sweep removes devices that back file without an attachment (an
	// attach killed before it was recorded, a VM powered off meanwhile).
	sweep(file string) error
}

// nopHypervisor is used when Options.Hypervisor is false.
type nopHypervisor struct{}

func (nopHypervisor) attach(string, string, string, string) error { return nil }
func (nopHypervisor) detach(string) error                         { return nil }
func (nopHypervisor) resize(string) error                         { return nil }
func (nopHypervisor) closeAll() error                             { return nil }
func (nopHypervisor) sweep(string) error                          { return nil }

// loopHypervisor backs each attached volume with a loop device.
type loopHypervisor struct {
	mu      sync.Mutex
	closed  bool
	devices map[string]loopDevice // by volume ID
}

type loopDevice struct {
	dev  string // /dev/loopN
	link string // <byIDDir>/wwn-0x<uuid>
	file string
}

func newLoopHypervisor() *loopHypervisor {
	return &loopHypervisor{devices: map[string]loopDevice{}}
}

// linkName is the by-id name of a disk: wwn-0x + 32 lowercase hex digits.
func linkName(diskUUID string) string {
	return "wwn-0x" + strings.ToLower(strings.ReplaceAll(diskUUID, "-", ""))
}

func losetup(args ...string) (string, error) {
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func (h *loopHypervisor) attach(volumeID, file, byIDDir, diskUUID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("simulator is shutting down")
	}
	if d, ok := h.devices[volumeID]; ok {
		if d.link == filepath.Join(byIDDir, linkName(diskUUID)) {
			return nil
		}
		return fmt.Errorf("volume %s already has loop device %s", volumeID, d.dev)
	}
	if err := os.MkdirAll(byIDDir, 0o750); err != nil {
		return err
	}
	// A device made by an earlier run of the embedded vCenter (stopped for
	// a restart, or killed) still backs the file: the disk never left the
	// VM, so it is taken over, not made again.
	dev, err := backingDevice(file)
	if err != nil {
		return err
	}
	if dev == "" {
		if dev, err = losetup("-f", "--show", file); err != nil {
			return err
		}
	}
	link := filepath.Join(byIDDir, linkName(diskUUID))
	_ = os.Remove(link)
	if err := os.Symlink(dev, link); err != nil {
		_, derr := losetup("-d", dev)
		return errors.Join(err, derr)
	}
	h.devices[volumeID] = loopDevice{dev: dev, link: link, file: file}
	klog.V(2).InfoS("hypervisor: disk attached", "volumeID", volumeID, "device", dev, "link", link)
	return nil
}

func (h *loopHypervisor) detach(volumeID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.devices[volumeID]
	if !ok {
		return nil
	}
	err := h.release(d)
	if err == nil {
		delete(h.devices, volumeID)
		klog.V(2).InfoS("hypervisor: disk detached", "volumeID", volumeID, "device", d.dev)
	}
	return err
}

// release removes the link and the loop device; both already gone is fine.
func (h *loopHypervisor) release(d loopDevice) error {
	var errs []error
	if err := os.Remove(d.link); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	if _, err := losetup("-d", d.dev); err != nil && stillBacked(d) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// backingDevice is the loop device that backs file, "" when none.
func backingDevice(file string) (string, error) {
	out, err := losetup("-n", "-O", "NAME", "-j", file)
	if err != nil {
		return "", err
	}
	if dev, _, _ := strings.Cut(strings.TrimSpace(out), "\n"); dev != "" {
		return strings.TrimSpace(dev), nil
	}
	return "", nil
}

// stillBacked reports whether the loop device still exists and backs the file.
func stillBacked(d loopDevice) bool {
	out, err := losetup("-n", "-O", "BACK-FILE", d.dev)
	return err == nil && strings.TrimSpace(out) == d.file
}

func (h *loopHypervisor) resize(volumeID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.devices[volumeID]
	if !ok {
		return nil
	}
	_, err := losetup("-c", d.dev)
	return err
}

func (h *loopHypervisor) closeAll() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	var errs []error
	for id, d := range h.devices {
		if err := unmountAll(d.dev); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: unmount %s: %w", id, d.dev, err))
		}
		if err := h.release(d); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", id, err))
			continue
		}
		delete(h.devices, id)
	}
	return errors.Join(errs...)
}

// device is the loop device of an attached volume ("" when none).
func (h *loopHypervisor) device(volumeID string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.devices[volumeID].dev
}

func (h *loopHypervisor) sweep(file string) error {
	out, err := losetup("-n", "-O", "NAME", "-j", file)
	if err != nil {
		return err
	}
	for _, dev := range strings.Fields(out) {
		if err := unmountAll(dev); err != nil {
			return err
		}
		if _, err := losetup("-d", dev); err != nil {
			return err
		}
		klog.InfoS("hypervisor: removed a device of a volume that is not attached", "device", dev, "file", file)
	}
	return nil
}
