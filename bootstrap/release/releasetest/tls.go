package releasetest

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
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// caValidity is how long the test certificate is valid: longer than any test run.
const caValidity = 24 * time.Hour

var testCA struct {
	once sync.Once
	cert tls.Certificate
	file string
	err  error
}

// TrustTestCA makes a self-signed certificate for 127.0.0.1 and localhost once
// per process, writes it to a file and points SSL_CERT_FILE at it, so that Go's
// default HTTP client in this process and in every process it starts trusts the
// test servers (and nothing else). It returns the certificate file (curl
// --cacert). It must run before the process's first TLS handshake.
func TrustTestCA(t testing.TB) string {
	t.Helper()
	testCA.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			testCA.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "gvisor-bootstrap test mirror"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(caValidity),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
			IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:              []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			testCA.err = err
			return
		}
		testCA.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		testCA.file, err = caFile()
		if err != nil {
			testCA.err = err
			return
		}
		if err := os.WriteFile(testCA.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			testCA.err = err
			return
		}
		testCA.err = os.Setenv("SSL_CERT_FILE", testCA.file)
	})
	if testCA.err != nil {
		t.Fatalf("test CA: %v", testCA.err)
	}
	return testCA.file
}

// caFile creates this process's certificate file in one directory for all test
// processes. The file must outlive every test of the process (its children read
// it), so no test's cleanup may remove it; instead files older than the
// certificate's validity, of processes long gone, are removed here.
func caFile() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("gvb-test-ca-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "ca-*.pem"))
	for _, n := range old {
		if st, err := os.Stat(n); err == nil && time.Since(st.ModTime()) > caValidity+time.Hour {
			_ = os.Remove(n)
		}
	}
	f, err := os.CreateTemp(dir, "ca-*.pem")
	if err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// StartTLS starts an HTTPS test server for h with the test CA's certificate.
func StartTLS(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	TrustTestCA(t)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{testCA.cert}}
	srv.StartTLS()
	return srv
}
