package sim

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// mountsOf lists the mount points whose source is the block device dev:
// mounts of it, bind mounts of those, and the device node bind-mounted onto
// a file (raw block), deepest first so that they can be unmounted in order.
func mountsOf(dev string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional…] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 || len(fields) < 5 {
			continue
		}
		root, point, fstype, source := fields[3], unescape(fields[4]), fields[sep+1], fields[sep+2]
		if source == dev || (fstype == "devtmpfs" && root == "/"+filepath.Base(dev)) {
			points = append(points, point)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space, …).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			n := 0
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				n = n*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts every mount of dev: when the embedded vCenter stops,
// its node VMs' disks go away, and what was mounted from them must not stay
// behind on the machine. A mount that is busy is detached lazily.
func unmountAll(dev string) error {
	points, err := mountsOf(dev)
	if err != nil {
		return err
	}
	for _, p := range points {
		if err := unix.Unmount(p, 0); err != nil {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				return err
			}
		}
		klog.V(2).InfoS("hypervisor: unmounted what was mounted from a disk going away", "device", dev, "path", p)
	}
	return nil
}
