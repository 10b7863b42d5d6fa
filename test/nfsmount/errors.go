package nfsmount

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// nfsStatus is an NFSv3 error status (nfsstat3, RFC 1813).
type nfsStatus uint32

// nfsErrnos maps NFSv3 statuses to errnos, as the kernel client does.
var nfsErrnos = map[nfsStatus]syscall.Errno{
	1:     syscall.EPERM,
	2:     syscall.ENOENT,
	5:     syscall.EIO,
	6:     syscall.ENXIO,
	13:    syscall.EACCES,
	17:    syscall.EEXIST,
	18:    syscall.EXDEV,
	19:    syscall.ENODEV,
	20:    syscall.ENOTDIR,
	21:    syscall.EISDIR,
	22:    syscall.EINVAL,
	27:    syscall.EFBIG,
	28:    syscall.ENOSPC,
	30:    syscall.EROFS,
	31:    syscall.EMLINK,
	63:    syscall.ENAMETOOLONG,
	66:    syscall.ENOTEMPTY,
	69:    syscall.EDQUOT,
	70:    syscall.ESTALE,
	71:    syscall.EREMOTE,
	10001: syscall.ESTALE, // BADHANDLE
	10004: syscall.EOPNOTSUPP,
	10005: syscall.EINVAL, // TOOSMALL
	10007: syscall.EINVAL, // BADTYPE
}

func (s nfsStatus) errno() syscall.Errno {
	if e, ok := nfsErrnos[s]; ok {
		return e
	}
	return syscall.EIO // SERVERFAULT, JUKEBOX, BAD_COOKIE, ...
}

func (s nfsStatus) Error() string { return fmt.Sprintf("NFS3 status %d (%v)", uint32(s), s.errno()) }

// mountStatus is a MOUNT v3 error status (mountstat3).
type mountStatus uint32

const (
	mnt3ErrPerm  mountStatus = 1
	mnt3ErrNoEnt mountStatus = 2
	mnt3ErrAcces mountStatus = 13
)

func (s mountStatus) errno() syscall.Errno {
	switch s {
	case mnt3ErrPerm, mnt3ErrAcces:
		return syscall.EACCES
	case mnt3ErrNoEnt:
		return syscall.ENOENT
	}
	return nfsStatus(s).errno() // the other values are errnos too
}

func (s mountStatus) Error() string {
	return fmt.Sprintf("MOUNT3 status %d (%v)", uint32(s), s.errno())
}

// toErrno turns an NFS call's error into the errno of the FUSE request:
// EIO for anything that is not a status from the server.
func toErrno(err error) syscall.Errno {
	var ns nfsStatus
	var ms mountStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ns):
		return ns.errno()
	case errors.As(err, &ms):
		// Re-mounting after a reconnection was refused.
		if ms == mnt3ErrNoEnt {
			return syscall.ESTALE // the export is gone
		}
		return ms.errno()
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	return syscall.EIO
}

// mountMessage words a failed mount as mount.nfs does, after "mount.nfs4: ".
func mountMessage(spec string, err error) string {
	var ms mountStatus
	var re *rpcError
	var dns *net.DNSError
	switch {
	case errors.As(err, &ms):
		if ms.errno() == syscall.EACCES {
			return "access denied by server while mounting " + spec
		}
		return fmt.Sprintf("mounting %s failed, reason given by server: %s", spec, errnoText(ms.errno()))
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errTimeout), isTimeout(err):
		return "Connection timed out"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "No route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return "Network is unreachable"
	case errors.As(err, &dns):
		return fmt.Sprintf("Failed to resolve server %s: %v", dns.Name, dns.Err)
	case errors.As(err, &re):
		return "requested NFS version or transport protocol is not supported (" + re.Error() + ")"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errnoText is strerror with a capital, as the C library words it.
func errnoText(e syscall.Errno) string {
	s := e.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}
