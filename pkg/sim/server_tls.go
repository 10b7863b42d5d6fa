package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // vSphere thumbprints are SHA-1 by definition
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// serverCert is the certificate the embedded vCenter presents, with what
// clients pin it by: its thumbprint, or the CA that issued it.
type serverCert struct {
	cert  tls.Certificate
	thumb string
	caPEM []byte // the issuing CA (the certificate itself when self-signed)
}

// certificate is the server's certificate: the one kept in the state dir
// when there is one (a restarted vCenter keeps its certificate, so the
// thumbprint or CA in csi-vsphere.conf stays valid), else a new
// self-signed one, which is then kept.
func (s *Sim) certificate() (*serverCert, error) {
	path := s.store.path("", "tls.pem")
	if data, err := os.ReadFile(path); err == nil {
		cert, err := tls.X509KeyPair(data, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return newServerCert(cert), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := certTemplate(s.opts.Listen, "vsphere-sim")
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return s.keepCertificate(path, [][]byte{der}, key)
}

// keepCertificate writes a chain (the server's certificate first) and its
// key to path and makes them the serverCert.
func (s *Sim) keepCertificate(path string, chain [][]byte, key *ecdsa.PrivateKey) (*serverCert, error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	var pemData []byte
	for _, der := range chain {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	if err := writeFile(path, pemData, 0o600); err != nil {
		return nil, fmt.Errorf("keep the certificate: %w", err)
	}
	return newServerCert(tls.Certificate{Certificate: chain, PrivateKey: key}), nil
}

// newServerCert describes a certificate chain: the last certificate is the
// CA that issued the first (the first itself when it is alone).
func newServerCert(cert tls.Certificate) *serverCert {
	ca := cert.Certificate[len(cert.Certificate)-1]
	return &serverCert{
		cert:  cert,
		thumb: thumbprint(cert.Certificate[0]),
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca}),
	}
}

// serverTLS serves whatever certificate is current, so that
// ReissueCertificate takes effect on the next handshake.
func (s *Sim) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &s.cert.Load().cert, nil
		},
	}
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// certTemplate is a server certificate for the listen address (plus
// localhost and the loopback addresses), valid for five years.
func certTemplate(listen, name string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"vsphere-cns sim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	return tmpl, nil
}

// ReissueCertificate replaces the vCenter's certificate with one issued by
// a new certificate authority, as an admin does who regenerates VMCA's
// root or installs a certificate from the company's CA. vCenter's services
// restart on such a change: every open connection is reset, and new ones
// see the new certificate. It returns the new CA's certificate (PEM), what
// a ca-file must hold from now on. The certificate is kept across
// restarts; Thumbprint and CAPEM follow it.
func (s *Sim) ReissueCertificate() ([]byte, error) {
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vsphere-sim CA " + serial.Text(16), Organization: []string{"vsphere-cns sim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := certTemplate(s.url.Host, "vsphere-sim")
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), crypto.Signer(caKey))
	if err != nil {
		return nil, err
	}
	c, err := s.keepCertificate(s.store.path("", "tls.pem"), [][]byte{der, caDER}, key)
	if err != nil {
		return nil, err
	}
	s.cert.Store(c)
	s.wire.resetAll()
	s.lab.events.add(Event{Kind: EventCertificate, Detail: "re-issued by " + ca.Subject.CommonName})
	klog.InfoS("vCenter simulator: certificate re-issued by a new CA; connections reset", "ca", ca.Subject.CommonName, "thumbprint", c.thumb)
	return c.caPEM, nil
}

// CertificatePEM is the simulator's TLS certificate in PEM form.
func (s *Sim) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Load().cert.Certificate[0]})
}

// CAPEM is the certificate of the CA that issued the simulator's
// certificate (the certificate itself until ReissueCertificate), in PEM
// form: what a client's ca-file holds.
func (s *Sim) CAPEM() []byte { return s.cert.Load().caPEM }

// thumbprint is the SHA-1 of a DER certificate as uppercase hex pairs
// joined by colons, the form vSphere and govmomi use.
func thumbprint(der []byte) string {
	sum := sha1.Sum(der) //nolint:gosec
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
