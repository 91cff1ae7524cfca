package fakeproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// testCA is the process-wide test CA and server certificate, generated once
// on first use (ECDSA P-256, valid for a day either side of now).
var testCA struct {
	once sync.Once
	err  error
	pool *x509.CertPool
	pem  []byte
	cert tls.Certificate
}

// serverTLS returns a fresh server TLS config using the test certificate.
func serverTLS() (*tls.Config, error) {
	testCA.once.Do(func() { testCA.err = genCA() })
	if testCA.err != nil {
		return nil, testCA.err
	}
	return &tls.Config{Certificates: []tls.Certificate{testCA.cert}, MinVersion: tls.VersionTLS12}, nil
}

func genCA() error {
	wrap := func(err error) error { return fmt.Errorf("fakeproxy: generate test certificate: %w", err) }
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return wrap(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fakeproxy test CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return wrap(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return wrap(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return wrap(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "fakeproxy"},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "proxyhealth.test", "*.proxyhealth.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return wrap(err)
	}
	testCA.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	testCA.pool = x509.NewCertPool()
	testCA.pool.AddCert(caCert)
	testCA.cert = tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
	return nil
}
