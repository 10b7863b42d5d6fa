package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
)

// handshake connects to the simulator verifying against the CA in caPEM.
func handshake(s *Sim, caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no certificate in the CA PEM")
	}
	c, err := tls.Dial("tcp", s.HostPort(), &tls.Config{RootCAs: pool, ServerName: s.Host(), MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	return c.Close()
}

// TestReissueCertificate: a certificate re-issued by a new CA is served at
// once and verifies against that CA only (not the old one); the thumbprint
// follows it, and a restart keeps it.
func TestReissueCertificate(t *testing.T) {
	s := startSim(t, Options{})
	old, oldThumb := s.CAPEM(), s.Thumbprint()
	if err := handshake(s, old); err != nil {
		t.Fatalf("the self-signed certificate against itself: %v", err)
	}
	ca, err := s.ReissueCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, s.CAPEM()) || bytes.Equal(ca, s.CertificatePEM()) || s.Thumbprint() == oldThumb {
		t.Fatalf("after re-issue: CAPEM is the new CA %v, the certificate is not the CA %v, thumbprint changed %v",
			bytes.Equal(ca, s.CAPEM()), !bytes.Equal(ca, s.CertificatePEM()), s.Thumbprint() != oldThumb)
	}
	if err := handshake(s, ca); err != nil {
		t.Fatalf("against the new CA: %v", err)
	}
	var unknown x509.UnknownAuthorityError
	if err := handshake(s, old); !errors.As(err, &unknown) {
		t.Fatalf("against the old certificate: %v, want unknown authority", err)
	}
	thumb := s.Thumbprint()
	s2 := restart(t, s, TasksAbandoned)
	if s2.Thumbprint() != thumb || !bytes.Equal(s2.CAPEM(), ca) {
		t.Fatalf("restart: thumbprint %s (want %s), CA kept %v", s2.Thumbprint(), thumb, bytes.Equal(s2.CAPEM(), ca))
	}
	if err := handshake(s2, ca); err != nil {
		t.Fatalf("restarted, against the new CA: %v", err)
	}
}
