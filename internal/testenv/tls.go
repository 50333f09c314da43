package testenv

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
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
)

// PKI is a throw-away certificate authority with a server certificate for
// 127.0.0.1 and localhost and a client certificate, written as PEM files.
type PKI struct {
	CAFile, ServerCertFile, ServerKeyFile, ClientCertFile, ClientKeyFile string
	pool                                                                 *x509.CertPool
	server                                                               tls.Certificate
}

// NewPKI writes a fresh CA, server and client certificate under dir.
func NewPKI(dir string) (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bacalhau-connect test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &PKI{CAFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, server bool) (certFile, keyFile string, cert tls.Certificate, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", cert, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return "", "", cert, err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", "", cert, err
		}
		certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return "", "", cert, err
		}
		if err := writePEM(keyFile, "EC PRIVATE KEY", keyDER); err != nil {
			return "", "", cert, err
		}
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		return certFile, keyFile, cert, err
	}
	if p.ServerCertFile, p.ServerKeyFile, p.server, err = issue(2, "server", x509.ExtKeyUsageServerAuth, true); err != nil {
		return nil, err
	}
	if p.ClientCertFile, p.ClientKeyFile, _, err = issue(3, "client", x509.ExtKeyUsageClientAuth, false); err != nil {
		return nil, err
	}
	return p, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ServerTLS is a server configuration with the PKI's server certificate;
// requireClient demands a client certificate the CA signed (mTLS).
func (p *PKI) ServerTLS(requireClient bool, nextProtos ...string) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
	if requireClient {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	return cfg
}

// TLSProxy terminates TLS (mTLS when its configuration says so) on a
// loopback port and forwards the plain bytes to a target: a secured
// frontend in front of a plain dev server, as a Temporal cluster with mTLS
// looks to its clients.
type TLSProxy struct {
	ln       net.Listener
	target   string
	wg       sync.WaitGroup
	verified atomic.Int64
	refused  atomic.Int64
}

// StartTLSProxy listens on a free loopback port.
func StartTLSProxy(target string, cfg *tls.Config) (*TLSProxy, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return nil, err
	}
	p := &TLSProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *TLSProxy) Addr() string { return p.ln.Addr().String() }

// Verified counts connections whose client presented a certificate the CA
// signed; Refused counts failed handshakes.
func (p *TLSProxy) Verified() int64 { return p.verified.Load() }

// Refused counts connections whose TLS handshake failed.
func (p *TLSProxy) Refused() int64 { return p.refused.Load() }

func (p *TLSProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c.(*tls.Conn))
	}
}

func (p *TLSProxy) forward(c *tls.Conn) {
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		p.refused.Add(1)
		return
	}
	_ = c.SetDeadline(time.Time{})
	if len(c.ConnectionState().VerifiedChains) > 0 {
		p.verified.Add(1)
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	devstack.Pipe(c, up)
}

// Close stops accepting; open connections end with their peers.
func (p *TLSProxy) Close() error {
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("closing the TLS proxy: %w", err)
	}
	return nil
}
