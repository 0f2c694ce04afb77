package lab

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The environment that makes a re-executed binary run a lab service; see
// RunServiceIfRequested.
const (
	envService     = "WARDLINE_LAB_SERVICE"      // service name, e.g. "httpd"
	envServiceArgs = "WARDLINE_LAB_SERVICE_ARGS" // JSON arguments
)

// service is one background service of the lab and how to tell it is ready.
type service struct {
	host   *Host
	name   string   // "dnsmasq" or "httpd"; names the log file
	argv   []string // external command; nil: re-execute this binary with env
	env    []string
	probes []probe
}

// probe checks readiness from inside the service's own namespace.
type probe struct {
	dns   bool           // a DNS query over UDP; otherwise a TCP connect
	tls   bool           // a TLS handshake after the TCP connect
	addr  netip.AddrPort //
	qname string         // for DNS: a name the server answers by itself
}

// httpdArgs configures the Go servers of one host (JSON in envServiceArgs).
type httpdArgs struct {
	Role    string
	Names   []string     // DNS names for the certificate
	IPs     []netip.Addr // addresses for the certificate
	HTTP    []int        // plain HTTP ports
	HTTPS   []int        // HTTPS ports (self-signed ECDSA certificate made at start)
	Discard []int        // TCP and UDP discard (RFC 863) ports
	Echo    []int        // TCP and UDP echo (RFC 862) ports
}

func (a httpdArgs) tcpPorts() []int {
	var ps []int
	for _, l := range [][]int{a.HTTP, a.HTTPS, a.Discard, a.Echo} {
		ps = append(ps, l...)
	}
	return ps
}

// dnsmasqBase are the flags every lab dnsmasq gets: no config files, no
// /etc/hosts, no /etc/resolv.conf, no pid file, no daemonising, no privilege
// drop, log to stderr (the log file), and bind only the given addresses.
var dnsmasqBase = []string{
	"dnsmasq",
	"--keep-in-foreground",
	"--log-facility=-",
	"--conf-file=/dev/null",
	"--no-hosts",
	"--no-resolv",
	"--pid-file=",
	"--user=root",
	"--bind-interfaces",
}

func hostRecord(name string, h *Host) string {
	return fmt.Sprintf("--host-record=%s,%v,%v", name, h.IPv4, h.IPv6)
}

// services lists the lab's services.
//
//   - dns (203.0.113.53, 2001:db8:113::53): dnsmasq with no upstream, answers
//     A, AAAA and PTR for web.example.com, c2.example.net and
//     mirror.example.org, NXDOMAIN for every other name.
//   - resolver (198.18.0.53, 2001:db8:18::53): dnsmasq forwarding every query
//     to the dns host with its cache off (so every client query crosses the
//     box), answering server1/server2.corp.example.com itself.
//   - web, c2, server1: Go servers, see RunServiceIfRequested. web and
//     server1: HTTP 80, HTTPS 443, discard 9, echo 7 (TCP and UDP); c2: HTTP
//     80, HTTPS 443 and 8443.
func (l *Lab) services() []service {
	h := l.Hosts
	dnsHost, resolver := h["dns"], h["resolver"]
	var svcs []service

	svcs = append(svcs, service{
		host: dnsHost, name: "dnsmasq",
		argv: append(append([]string(nil), dnsmasqBase...),
			"--listen-address="+dnsHost.IPv4.String(),
			"--listen-address="+dnsHost.IPv6.String(),
			"--local=/#/", // every name not below is NXDOMAIN
			hostRecord(WebName, h["web"]),
			hostRecord(C2Name, h["c2"]),
			hostRecord(MirrorName, h["mirror"]),
		),
		probes: []probe{
			{dns: true, addr: netip.AddrPortFrom(dnsHost.IPv4, 53), qname: WebName},
			{dns: true, addr: netip.AddrPortFrom(dnsHost.IPv6, 53), qname: WebName},
		},
	})
	svcs = append(svcs, service{
		host: resolver, name: "dnsmasq",
		argv: append(append([]string(nil), dnsmasqBase...),
			"--listen-address="+resolver.IPv4.String(),
			"--listen-address="+resolver.IPv6.String(),
			"--server="+dnsHost.IPv4.String(),
			"--cache-size=0",
			hostRecord(Server1Name, h["server1"]),
			hostRecord(Server2Name, h["server2"]),
		),
		// Ask for a name the resolver answers itself: the upstream is only
		// reachable through the box, which may not bridge yet (NoBoxBridge).
		probes: []probe{
			{dns: true, addr: netip.AddrPortFrom(resolver.IPv4, 53), qname: Server1Name},
			{dns: true, addr: netip.AddrPortFrom(resolver.IPv6, 53), qname: Server1Name},
		},
	})

	httpd := func(role string, names []string, a httpdArgs) {
		host := h[role]
		a.Role = role
		a.Names = names
		a.IPs = []netip.Addr{host.IPv4, host.IPv6}
		args, err := json.Marshal(a)
		if err != nil {
			panic(err) // plain data; cannot fail
		}
		s := service{
			host: host, name: "httpd",
			env: []string{envService + "=httpd", envServiceArgs + "=" + string(args)},
		}
		for _, port := range a.tcpPorts() {
			s.probes = append(s.probes, probe{addr: netip.AddrPortFrom(host.IPv4, uint16(port)), tls: slices.Contains(a.HTTPS, port)})
		}
		s.probes = append(s.probes, probe{addr: netip.AddrPortFrom(host.IPv6, uint16(a.HTTP[0]))})
		svcs = append(svcs, s)
	}
	httpd("web", []string{WebName}, httpdArgs{HTTP: []int{80}, HTTPS: []int{443}, Discard: []int{9}, Echo: []int{7}})
	httpd("c2", []string{C2Name}, httpdArgs{HTTP: []int{80}, HTTPS: []int{443, 8443}})
	httpd("server1", []string{Server1Name}, httpdArgs{HTTP: []int{80}, HTTPS: []int{443}, Discard: []int{9}, Echo: []int{7}})
	return svcs
}

// startServices starts every service, then waits until all answer.
func (l *Lab) startServices(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable for lab services: %w", err)
	}
	var selfArgs []string
	if testing.Testing() {
		// Should the test binary lack the RunServiceIfRequested call,
		// run no tests in the child rather than the whole suite again.
		selfArgs = []string{"-test.run=^$", "-test.count=1"}
	}
	svcs := l.services()
	procs := make([]*Process, len(svcs))
	for i, s := range svcs {
		argv := s.argv
		if argv == nil {
			argv = append([]string{self}, selfArgs...)
		}
		p, err := l.start(s.host, s.name, s.env, argv[0], argv[1:]...)
		if err != nil {
			return fmt.Errorf("start %s on %s: %w", s.name, s.host.Role, err)
		}
		procs[i] = p
	}
	ctx, cancel := context.WithTimeout(ctx, l.Config.ReadyTimeout)
	defer cancel()
	errs := make([]error, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reexec := ""
			if s.argv == nil {
				reexec = self
			}
			errs[i] = waitReady(ctx, s, procs[i], reexec)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitReady polls s's probes from inside its namespace until all pass, the
// process exits, or ctx ends. Its error names the service and carries the
// tail of the service's log. reexec is the executable for a service that
// runs this binary again, "" for an external command.
func waitReady(ctx context.Context, s service, p *Process, reexec string) error {
	var (
		last error
		at   probe
	)
	err := Do(s.host.NS, func() error {
		for _, pr := range s.probes {
			at = pr
			for {
				if last = pr.check(); last == nil {
					break
				}
				if !p.Alive() {
					return errExited
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(25 * time.Millisecond):
				}
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("service %s on %s (%s, pid %d)", s.name, s.host.Role, s.host.NS, p.PID)
	var msg string
	switch {
	case errors.Is(err, errExited):
		status := "exit status 0"
		if werr := p.Wait(); werr != nil {
			status = werr.Error()
		}
		msg = fmt.Sprintf("%s exited before it was ready (%s)", what, status)
		if reexec != "" && !strings.Contains(p.logTail(1000), serviceBanner) {
			msg += fmt.Sprintf(" and never ran as a lab service: does %s call lab.RunServiceIfRequested() first in main/TestMain?", reexec)
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		msg = fmt.Sprintf("%s not ready: %v; probe of %v (dns %v, tls %v) failed: %v", what, err, at.addr, at.dns, at.tls, last)
	default:
		msg = fmt.Sprintf("%s: %v", what, err)
	}
	return fmt.Errorf("%s\n--- tail of %s:\n%s", msg, p.Log, p.logTail(15))
}

var errExited = errors.New("process exited")

// check runs one probe attempt.
func (pr probe) check() error {
	if !pr.dns {
		d := &net.Dialer{Timeout: 250 * time.Millisecond}
		if pr.tls {
			c, err := tls.DialWithDialer(d, "tcp", pr.addr.String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				return err
			}
			return c.Close()
		}
		c, err := d.Dial("tcp", pr.addr.String())
		if err != nil {
			return err
		}
		return c.Close()
	}
	c, err := net.Dial("udp", pr.addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(rand.Uint32())
	if _, err := c.Write(dnsQuery(id, pr.qname)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if n < 12 || binary.BigEndian.Uint16(buf) != id || buf[2]&0x80 == 0 {
		return fmt.Errorf("bad DNS reply from %v", pr.addr)
	}
	if rcode := buf[3] & 0x0f; rcode != 0 {
		return fmt.Errorf("DNS reply from %v for %s: rcode %d", pr.addr, pr.qname, rcode)
	}
	return nil
}

// dnsQuery builds a recursive query for the A record of name.
func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00) // RD
	b = append(b, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1) // root, type A, class IN
}
