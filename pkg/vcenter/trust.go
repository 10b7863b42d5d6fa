package vcenter

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"k8s.io/klog/v2"
)

// caFile is the CA bundle csi-vsphere.conf's ca-file names, read at every
// new TLS connection to vCenter and parsed again when its bytes changed:
// when vCenter's certificate is re-issued by another CA, the connections
// vCenter's restart dropped come back as soon as the mounted Secret holds
// the new CA, without restarting the driver. Connections already open stay
// (they were verified when they were made).
type caFile struct {
	path string

	mu      sync.Mutex
	data    []byte         // the bytes pool was made of
	pool    *x509.CertPool // nil until the file was read once
	badData []byte         // the last unusable content, logged once
}

// roots is the file's certificates now. A file that can't be read or
// holds no certificate keeps the last good ones (a Secret being written
// is replaced at once, not in parts; a mistake in it must not cut the
// driver off) and is logged once per content; with none before, it is an
// error.
func (f *caFile) roots() (*x509.CertPool, error) {
	data, err := os.ReadFile(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil && bytes.Equal(data, f.data) {
		return f.pool, nil
	}
	if err == nil {
		pool := x509.NewCertPool()
		if pool.AppendCertsFromPEM(data) {
			if f.pool != nil {
				klog.InfoS("vCenter's CA file changed: new connections to vCenter are verified against it", "caFile", f.path)
			}
			f.data, f.pool, f.badData = data, pool, nil
			return pool, nil
		}
		err = errors.New("it holds no PEM certificate")
	}
	if f.pool == nil {
		return nil, fmt.Errorf("CA file %s: %w", f.path, err)
	}
	if data == nil || !bytes.Equal(data, f.badData) {
		klog.ErrorS(err, "vCenter's CA file can't be used; going on with the certificates read before", "caFile", f.path)
		f.badData = data
	}
	return f.pool, nil
}

// caHint says what to do when vCenter's certificate is not issued by a CA
// of the ca-file: err unchanged for any other failure.
func caHint(err error, path string) error {
	var unknown x509.UnknownAuthorityError
	if path == "" || !errors.As(err, &unknown) {
		return err
	}
	return fmt.Errorf("vCenter's certificate is not trusted by ca-file %s (re-issued by another CA? put that CA in the file, "+
		"the driver reads it again at each new connection): %w", path, err)
}

// insecureWarning is what the driver says when it connects to vCenter
// without verifying anything ("" when it verifies). insecure-flag with a
// ca-file or thumbprint is logged where the file is read (config.Parse).
func insecureWarning(opts Options) string {
	if !opts.Insecure || opts.CAFile != "" || opts.Thumbprint != "" {
		return ""
	}
	return "insecure-flag is true and csi-vsphere.conf names neither ca-file nor thumbprint: vCenter's certificate is " +
		"not verified, so whoever can intercept the traffic to vCenter can pose as it and read the driver's vCenter " +
		"password. Set ca-file to vCenter's CA (its trusted root certificates: https://<vcenter>/certs/download.zip) " +
		"or thumbprint to its certificate's SHA-1 or SHA-256 fingerprint, and insecure-flag = false"
}
