package certs

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"path"
	"strings"
	"time"
)

// maxPEM bounds what is read for a certificate or a key.
const maxPEM = 1 << 20

// Parsed is a validated certificate with its key.
type Parsed struct {
	TLS  tls.Certificate
	Leaf *x509.Certificate
}

// Names returns the DNS names the certificate is for (its SANs, or its
// common name when it has none), lowercased.
func (p *Parsed) Names() []string { return leafNames(p.Leaf) }

// Covers reports whether the certificate is valid for host.
func (p *Parsed) Covers(host string) bool { return p.Leaf.VerifyHostname(host) == nil }

func leafNames(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	if len(out) == 0 && c.Subject.CommonName != "" {
		out = append(out, strings.ToLower(c.Subject.CommonName))
	}
	return out
}

// ParsePair validates a PEM certificate chain (leaf first) and its PEM
// private key: both must parse, the key must match the leaf, and the leaf
// must not have expired. The error is one sentence saying what is wrong.
func ParsePair(certPEM, keyPEM []byte, now time.Time) (*Parsed, error) {
	if len(bytes.TrimSpace(certPEM)) == 0 {
		return nil, errors.New("the certificate is empty")
	}
	if len(bytes.TrimSpace(keyPEM)) == 0 {
		return nil, errors.New("the private key is empty")
	}
	var certDER [][]byte
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certDER = append(certDER, b.Bytes)
		case strings.Contains(b.Type, "PRIVATE KEY"):
			return nil, errors.New("the certificate file holds a private key: give the certificate first and the key second")
		}
	}
	if len(certDER) == 0 {
		return nil, errors.New("the certificate is not PEM: no CERTIFICATE block found")
	}
	leaf, err := x509.ParseCertificate(certDER[0])
	if err != nil {
		return nil, fmt.Errorf("the certificate cannot be parsed: %v", err)
	}
	for i, der := range certDER[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("certificate %d of the chain cannot be parsed: %v", i+2, err)
		}
	}
	if kb, _ := pem.Decode(keyPEM); kb == nil || !strings.Contains(kb.Type, "PRIVATE KEY") {
		return nil, errors.New("the private key is not PEM: no PRIVATE KEY block found")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, errors.New("the private key does not match the certificate")
		}
		return nil, fmt.Errorf("the certificate and key cannot be used: %v", err)
	}
	pair.Leaf = leaf
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(leafNames(leaf)) == 0 {
		return nil, errors.New("the certificate names no host (no DNS SAN and no common name)")
	}
	return &Parsed{TLS: pair, Leaf: leaf}, nil
}

// ReadBundle reads a certificate and key from r: a tar archive holding
// server.crt and server.key (as Dokku's certs:add takes), or PEM text
// holding the certificate chain and the key.
func ReadBundle(r io.Reader) (certPEM, keyPEM []byte, err error) {
	data, err := io.ReadAll(io.LimitReader(r, 4*maxPEM+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read stdin: %w", err)
	}
	if len(data) > 4*maxPEM {
		return nil, nil, errors.New("the input is too large for a certificate and key")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New("no certificate given: pass CRT and KEY files, or a tar holding server.crt and server.key on stdin")
	}
	if isTar(data) {
		return readTar(data)
	}
	var certs, keys bytes.Buffer
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			pem.Encode(&certs, b)
		case strings.Contains(b.Type, "PRIVATE KEY"):
			if keys.Len() > 0 {
				return nil, nil, errors.New("the input holds more than one private key")
			}
			pem.Encode(&keys, b)
		}
	}
	if certs.Len() == 0 {
		return nil, nil, errors.New("stdin holds neither a tar with server.crt and server.key nor a PEM certificate")
	}
	if keys.Len() == 0 {
		return nil, nil, errors.New("stdin holds a certificate but no private key")
	}
	return certs.Bytes(), keys.Bytes(), nil
}

func isTar(data []byte) bool {
	return len(data) >= 263 && string(data[257:262]) == "ustar"
}

func readTar(data []byte) ([]byte, []byte, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var crt, key []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read the tar on stdin: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var dst *[]byte
		switch path.Base(h.Name) {
		case "server.crt":
			dst = &crt
		case "server.key":
			dst = &key
		default:
			continue
		}
		if h.Size > maxPEM {
			return nil, nil, fmt.Errorf("%s in the tar is too large", h.Name)
		}
		if *dst, err = io.ReadAll(io.LimitReader(tr, maxPEM)); err != nil {
			return nil, nil, fmt.Errorf("read %s from the tar: %w", h.Name, err)
		}
	}
	if crt == nil || key == nil {
		return nil, nil, errors.New("the tar on stdin must hold server.crt and server.key")
	}
	return crt, key, nil
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for hosts, valid
// for one year, and returns its PEM certificate and key.
func SelfSigned(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no host to make a certificate for")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"berth self-signed"}},
		DNSNames:              hosts,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// ParseRoots parses PEM CA certificates (for trusting a private ACME
// server).
func ParseRoots(pemData []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("the CA certificate cannot be parsed: %v", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM CERTIFICATE block found")
	}
	return pool, n, nil
}
