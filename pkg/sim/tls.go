package sim

import (
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
)

// certificate is the server's TLS config and thumbprint: the certificate
// kept in the state dir when there is one (a restarted vCenter keeps its
// certificate, so the thumbprint in csi-vsphere.conf stays valid), else a
// new one, which is then kept.
func (s *Sim) certificate() (*tls.Config, string, error) {
	path := s.store.path("", "tls.pem")
	if data, err := os.ReadFile(path); err == nil {
		cert, err := tls.X509KeyPair(data, data)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return serverTLS(cert), thumbprint(cert.Certificate[0]), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", err
	}
	cert, pemData, err := selfSignedCert(s.opts.Listen)
	if err != nil {
		return nil, "", err
	}
	if err := writeFile(path, pemData, 0o600); err != nil {
		return nil, "", fmt.Errorf("keep the certificate: %w", err)
	}
	return serverTLS(cert), thumbprint(cert.Certificate[0]), nil
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
}

// selfSignedCert makes a fresh ECDSA certificate for the listen address
// (plus localhost and the loopback addresses): the certificate, and it
// and its key in PEM.
func selfSignedCert(listen string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vsphere-sim", Organization: []string{"vsphere-cns sim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemData, nil
}

// CertificatePEM is the simulator's TLS certificate in PEM form, for
// clients that verify with a CA file (ca-file) instead of a thumbprint.
func (s *Sim) CertificatePEM() []byte {
	cert := s.tls.Certificates[0].Certificate[0]
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})
}

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
