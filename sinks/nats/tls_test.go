// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	file string // the CA certificate, PEM
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flowtap test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pool: x509.NewCertPool(), file: filepath.Join(t.TempDir(), "ca.pem")}
	ca.pool.AddCert(cert)
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate for a server (names and 127.0.0.1) or, with
// client set, for a client; it returns it and the PEM files of it and its
// key.
func (ca *testCA) issue(t *testing.T, serial int64, client bool, names ...string) (cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "flowtap test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: names, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage, tmpl.DNSNames, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTLS publishes to a server that requires TLS, with a certificate of
// a CA made in the test: the sink trusts it through tls.ca_file, checks
// the server's name, and presents a client certificate where the server
// verifies clients.
func TestTLS(t *testing.T) {
	ca := newCA(t)
	serverCert, _, _ := ca.issue(t, 2, false, "nats.test")
	_, clientCert, clientKey := ca.issue(t, 3, true)
	tlsServer := func(verifyClients bool) func(*server.Options) {
		return func(o *server.Options) {
			o.TLS, o.TLSVerify, o.TLSTimeout = true, verifyClients, 5
			o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12, ClientCAs: ca.pool}
			if verifyClients {
				o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
	}
	plain, mutual := startServer(t, tlsServer(false)), startServer(t, tlsServer(true))
	plain.client = []natsgo.Option{natsgo.Secure(&tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12})}
	plain.addStream("FLOWTAP", "flowtap.>")
	for _, tc := range []struct {
		name string
		ts   *testServer
		tls  map[string]any
		want string // "" when the batch is stored
	}{
		{"ca_file", plain, map[string]any{"ca_file": ca.file}, ""},
		{"ca_file and server_name in the certificate", plain, map[string]any{"ca_file": ca.file, "server_name": "nats.test"}, ""},
		{"system CAs do not know the test CA", plain, nil, "TLS failed: check tls.ca_file"},
		{"server_name not in the certificate", plain, map[string]any{"ca_file": ca.file, "server_name": "other.test"}, "TLS failed: check tls.ca_file"},
		{"client certificate", mutual, map[string]any{"ca_file": ca.file, "cert_file": clientCert, "key_file": clientKey}, ""},
		{"no client certificate", mutual, map[string]any{"ca_file": ca.file}, "servers: connect to tls://127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]any{"servers": []string{tc.ts.url()}, "subject": "flowtap.{event}", "jetstream": tc.ts == plain, "connect_timeout": "2s"}
			if tc.tls != nil {
				cfg["tls"] = tc.tls
			}
			h := sdktest.New(t, New())
			err := h.Configure(cfg)
			defer h.Close()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Configure:\n got %v\nwant %q", err, tc.want)
				}
				t.Logf("Configure refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Write(flowEvents(1, 2)...); err != nil {
				t.Errorf("Write over TLS: %v", err)
			}
		})
	}
}
