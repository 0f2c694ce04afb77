package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// RunServiceIfRequested runs a lab service and exits if this process was
// started as one (the environment variable WARDLINE_LAB_SERVICE is set);
// otherwise it returns at once. Up starts the lab's Go servers by running
// the calling binary again inside a namespace, so every binary and test
// binary that calls Up or ForTest must call RunServiceIfRequested first
// thing in main() or TestMain, before flag parsing.
//
// The only service is "httpd": for each configured host, HTTP and HTTPS
// (a self-signed ECDSA P-256 certificate made at start for the host's names
// and addresses) on [::] with
//
//	GET  /             a small HTML page
//	GET  /bytes?n=N    exactly N bytes (N ≤ 1 GiB) of a fixed pseudo-random pattern
//	POST /upload       reads and discards the body, answers its length in decimal
//	GET  /beacon       a short JSON document, as a C2 check-in would get
//
// plus TCP and UDP discard and echo listeners. The service stops on SIGTERM
// or SIGINT.
func RunServiceIfRequested() {
	name := os.Getenv(envService)
	if name == "" {
		return
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	// Up looks for this line to tell a failing service from a binary that
	// never called RunServiceIfRequested.
	logger.Printf("%s %s (pid %d)", serviceBanner, name, os.Getpid())
	var err error
	switch name {
	case "httpd":
		var a httpdArgs
		if err = json.Unmarshal([]byte(os.Getenv(envServiceArgs)), &a); err != nil {
			err = fmt.Errorf("parse %s: %w", envServiceArgs, err)
			break
		}
		err = runHTTPD(a, logger)
	default:
		err = fmt.Errorf("unknown lab service %q", name)
	}
	if err != nil {
		logger.Printf("lab service %s: %v", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serviceBanner starts the first log line of every re-executed service.
const serviceBanner = "lab service"

// maxBytes caps /bytes.
const maxBytes = 1 << 30

// pattern is what /bytes serves: pseudo-random (incompressible, like the
// encrypted or compressed payloads an NDR sees) but the same every run.
var pattern = func() []byte {
	r := mrand.New(mrand.NewChaCha8([32]byte{'w', 'a', 'r', 'd', 'l', 'i', 'n', 'e'}))
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

// newHandler returns the HTTP handler of a lab host.
func newHandler(role string, logger *log.Logger) http.Handler {
	var beacons atomic.Uint64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		h := html.EscapeString(r.Host)
		fmt.Fprintf(w, "<!doctype html>\n<html><head><title>%s</title></head>\n<body><h1>%s</h1><p>Wardline lab host %s.</p></body></html>\n", h, h, html.EscapeString(role))
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > maxBytes {
			http.Error(w, fmt.Sprintf("want n=0..%d", maxBytes), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			chunk := pattern[:min(n, int64(len(pattern)))]
			if _, err := w.Write(chunk); err != nil {
				return
			}
			n -= int64(len(chunk))
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("GET /beacon", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"host":  role,
			"seq":   beacons.Add(1),
			"task":  "sleep",
			"sleep": 60,
		})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		if logger != nil {
			logger.Printf("%s %s %s %s%s -> %d, %d bytes", r.RemoteAddr, r.Proto, r.Method, r.Host, r.URL.RequestURI(), rec.status, rec.n)
		}
	})
}

// recorder remembers a response's status and size for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }
func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

// selfSigned makes an ECDSA P-256 certificate for the host's names and IPs.
func selfSigned(a httpdArgs, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := a.Role
	if len(a.Names) > 0 {
		cn = a.Names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Wardline lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              a.Names,
	}
	for _, ip := range a.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// runHTTPD serves a until SIGTERM or SIGINT. Every listener is opened before
// anything is served, so a port conflict fails the service at once.
func runHTTPD(a httpdArgs, logger *log.Logger) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	cert, err := selfSigned(a, time.Now())
	if err != nil {
		return fmt.Errorf("make certificate: %w", err)
	}
	handler := newHandler(a.Role, logger)
	var (
		closers []io.Closer
		serve   []func()
	)
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	listen := func(network string, port int) (any, error) {
		addr := net.JoinHostPort("", strconv.Itoa(port)) // [::], dual-stack
		if network == "udp" {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return nil, err
			}
			closers = append(closers, pc)
			return pc, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		closers = append(closers, ln)
		return ln, nil
	}
	for _, port := range a.HTTP {
		ln, err := listen("tcp", port)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: logger}
		closers = append(closers, srv)
		serve = append(serve, func() { srv.Serve(ln.(net.Listener)) })
	}
	for _, port := range a.HTTPS {
		ln, err := listen("tcp", port)
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler: handler, ReadHeaderTimeout: 30 * time.Second, ErrorLog: logger,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		}
		closers = append(closers, srv)
		serve = append(serve, func() { srv.ServeTLS(ln.(net.Listener), "", "") })
	}
	stream := func(port int, echo bool) error {
		ln, err := listen("tcp", port)
		if err != nil {
			return err
		}
		pc, err := listen("udp", port)
		if err != nil {
			return err
		}
		serve = append(serve,
			func() { serveStream(ln.(net.Listener), echo, logger) },
			func() { servePackets(pc.(net.PacketConn), echo) })
		return nil
	}
	for _, port := range a.Discard {
		if err := stream(port, false); err != nil {
			return err
		}
	}
	for _, port := range a.Echo {
		if err := stream(port, true); err != nil {
			return err
		}
	}
	for _, s := range serve {
		go s()
	}
	logger.Printf("httpd for %s %v: http %v https %v discard %v echo %v", a.Role, a.Names, a.HTTP, a.HTTPS, a.Discard, a.Echo)
	sig := <-sigs
	logger.Printf("exiting on %v", sig)
	return nil
}

// serveStream serves TCP discard or echo until ln is closed.
func serveStream(ln net.Listener, echo bool, logger *log.Logger) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Printf("accept on %v: %v", ln.Addr(), err)
			}
			return
		}
		go func() {
			defer c.Close()
			var n int64
			if echo {
				n, _ = io.Copy(c, c)
			} else {
				n, _ = io.Copy(io.Discard, c)
			}
			logger.Printf("%s -> %v: %d bytes", c.RemoteAddr(), c.LocalAddr(), n)
		}()
	}
}

// servePackets serves UDP discard or echo until pc is closed.
func servePackets(pc net.PacketConn, echo bool) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if echo {
			pc.WriteTo(buf[:n], from)
		}
	}
}
