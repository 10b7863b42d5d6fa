package nfsmount

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// nfsPort is where the server is when no port= says otherwise: there is
// no portmapper to ask.
const nfsPort = 2049

// request is one mount as mount(8) asks it of its helper:
//
//	mount.nfs4 SPEC DIR [-s] [-f] [-n] [-v] [-r] [-w] [-o OPTIONS] [-t TYPE]
//
// with the flags in any order, before or after the operands.
type request struct {
	prog   string // the name in messages: mount.nfs4 or mount.nfs
	fstype string // nfs4 or nfs: the mount shows as fuse.<fstype>

	spec, host, path string // HOST:/path, HOST, /path
	dir              string // the mount point, absolute

	opts      string  // the -o options, as given
	flags     uintptr // MS_* flags from the options and -r
	port      int     // of the NFS program
	mountPort int     // of the MOUNT program (default: port)

	remount, fake, verbose, sloppy bool
	soft                           bool     // soft or softerr given (after any hard)
	warnings                       []string // about options ignored
}

// nfsOptions are the NFS options accepted and ignored: they tune a kernel
// client this helper is not (it speaks NFSv3 whatever vers= says, over
// TCP, without locking or caching).
var nfsOptions = map[string]bool{
	"hard": true, "soft": true, "softerr": true, "intr": true, "nointr": true,
	"sec": true, "vers": true, "nfsvers": true, "minorversion": true,
	"proto": true, "mountproto": true, "tcp": true, "udp": true, "rdma": true,
	"timeo": true, "retrans": true, "retry": true, "resvport": true, "noresvport": true,
	"lock": true, "nolock": true, "local_lock": true, "rsize": true, "wsize": true,
	"ac": true, "noac": true, "actimeo": true, "acregmin": true, "acregmax": true,
	"acdirmin": true, "acdirmax": true, "lookupcache": true, "fsc": true, "nofsc": true,
	"sharecache": true, "nosharecache": true, "cto": true, "nocto": true,
	"acl": true, "noacl": true, "rdirplus": true, "nordirplus": true,
	"addr": true, "clientaddr": true, "mountaddr": true, "mountvers": true,
	"mounthost": true, "namlen": true, "bg": true, "fg": true, "nconnect": true,
	"max_connect": true, "posix": true, "noposix": true, "xprtsec": true,
	"trunkdiscovery": true, "notrunkdiscovery": true, "fsid": true,
	// mount(8)'s own, and fstab's
	"defaults": true, "auto": true, "noauto": true, "user": true, "nouser": true,
	"users": true, "owner": true, "group": true, "nofail": true, "_netdev": true,
	"comment": true, "mand": true, "nomand": true, "loud": true, "silent": true,
	"iversion": true, "noiversion": true, "lazytime": true, "nolazytime": true,
}

// vfsFlags are the options that are mount flags: set (true) or cleared.
var vfsFlags = map[string]struct {
	flag uintptr
	set  bool
}{
	"ro": {syscall.MS_RDONLY, true}, "rw": {syscall.MS_RDONLY, false},
	"nosuid": {syscall.MS_NOSUID, true}, "suid": {syscall.MS_NOSUID, false},
	"nodev": {syscall.MS_NODEV, true}, "dev": {syscall.MS_NODEV, false},
	"noexec": {syscall.MS_NOEXEC, true}, "exec": {syscall.MS_NOEXEC, false},
	"sync": {syscall.MS_SYNCHRONOUS, true}, "async": {syscall.MS_SYNCHRONOUS, false},
	"dirsync": {syscall.MS_DIRSYNC, true},
	"noatime": {syscall.MS_NOATIME, true}, "atime": {syscall.MS_NOATIME, false},
	"nodiratime": {syscall.MS_NODIRATIME, true}, "diratime": {syscall.MS_NODIRATIME, false},
	"relatime": {syscall.MS_RELATIME, true}, "norelatime": {syscall.MS_RELATIME, false},
	"strictatime": {syscall.MS_STRICTATIME, true},
}

// errUsage is a command line this helper can't make sense of.
var errUsage = errors.New("usage")

// parseArgs reads mount(8)'s arguments to its helper; argv0 names the
// helper (mount.nfs4 or mount.nfs).
func parseArgs(argv0 string, args []string) (*request, error) {
	r := &request{prog: "mount.nfs", fstype: "nfs", port: nfsPort}
	if base := filepath.Base(argv0); strings.HasPrefix(base, "mount.nfs") {
		r.prog, r.fstype = base, strings.TrimPrefix(base, "mount.")
	}
	var operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "" || a[0] != '-' || a == "-" {
			operands = append(operands, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			switch a[j] {
			case 's':
				r.sloppy = true
			case 'f':
				r.fake = true
			case 'v':
				r.verbose = true
			case 'n':
			case 'r':
				r.flags |= syscall.MS_RDONLY
			case 'w':
				r.flags &^= syscall.MS_RDONLY
			case 'o', 't':
				val := a[j+1:]
				if val == "" {
					if i++; i == len(args) {
						return nil, fmt.Errorf("%w: -%c needs a value", errUsage, a[j])
					}
					val = args[i]
				}
				if a[j] == 'o' {
					r.opts = strings.TrimPrefix(r.opts+","+val, ",")
				} else if val == "nfs" || val == "nfs4" {
					r.fstype = val
				}
				j = len(a)
			default:
				return nil, fmt.Errorf("%w: unknown flag -%c", errUsage, a[j])
			}
		}
	}
	if len(operands) != 2 {
		return nil, fmt.Errorf("%w: need a remote share and a mount point", errUsage)
	}
	r.spec, r.dir = operands[0], operands[1]
	if dir, err := filepath.Abs(r.dir); err == nil {
		r.dir = dir
	}
	var ok bool
	if r.host, r.path, ok = splitSpec(r.spec); !ok {
		return nil, errors.New("remote share not in 'host:dir' format")
	}
	if err := r.parseOptions(); err != nil {
		return nil, err
	}
	if r.mountPort == 0 {
		r.mountPort = r.port
	}
	return r, nil
}

func (r *request) parseOptions() error {
	for _, o := range strings.Split(r.opts, ",") {
		key, val, hasVal := strings.Cut(o, "=")
		if f, ok := vfsFlags[key]; ok && !hasVal {
			if f.set {
				r.flags |= f.flag
			} else {
				r.flags &^= f.flag
			}
			continue
		}
		switch {
		case o == "":
		case key == "remount" && !hasVal:
			r.remount = true
		case key == "port" || key == "mountport":
			p, err := strconv.Atoi(val)
			if err != nil || p < 0 || p > 65535 {
				return fmt.Errorf("invalid value for option %q", o)
			}
			if p == 0 { // 0: ask the portmapper, which is this port here
				p = nfsPort
			}
			if key == "port" {
				r.port = p
			} else {
				r.mountPort = p
			}
		case key == "vers" || key == "nfsvers":
			// As the kernel does: a v4 mount shows as nfs4, v3 as nfs.
			if strings.HasPrefix(val, "4") {
				r.fstype = "nfs4"
			} else if val == "3" || val == "2" {
				r.fstype = "nfs"
			}
		case (key == "hard" || key == "soft" || key == "softerr") && !hasVal:
			r.soft = key != "hard"
		case nfsOptions[key] || strings.HasPrefix(key, "x-"):
		case !r.sloppy:
			r.warnings = append(r.warnings, fmt.Sprintf("ignoring unknown option %q", o))
		}
	}
	return nil
}

// splitSpec splits HOST:/path (HOST may be a bracketed IPv6 address).
func splitSpec(spec string) (host, path string, ok bool) {
	if rest, found := strings.CutPrefix(spec, "["); found {
		host, path, ok = strings.Cut(rest, "]:")
	} else {
		host, path, ok = strings.Cut(spec, ":")
	}
	return host, path, ok && host != "" && strings.HasPrefix(path, "/")
}

func (r *request) nfsAddr() string   { return net.JoinHostPort(r.host, strconv.Itoa(r.port)) }
func (r *request) mountAddr() string { return net.JoinHostPort(r.host, strconv.Itoa(r.mountPort)) }
