package enforce_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/enforce/nftset"
	"github.com/wardline/wardline/enforce/xdpset"
	"github.com/wardline/wardline/lab"
)

// Verdicts of the fast path (XDP_DROP, XDP_PASS).
const (
	xdpDrop = 1
	xdpPass = 2
)

// needRoot skips without root, except under CI, which runs as root: there a
// skip would hide a failure.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI runs as root: this test must not be skipped (euid %d)", os.Geteuid())
	}
	t.Skipf("skipping: needs root for BPF maps, network namespaces and nftables (euid %d; CI runs as root)", os.Geteuid())
}

// udpFrame is a UDP frame from src to 192.0.2.1.
func udpFrame(t *testing.T, src netip.Addr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xa}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xb}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: net.IP{192, 0, 2, 1}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 5000}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("churn")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// keysOf reads a backend's elements as a set of keys.
func keysOf(t *testing.T, b enforce.Backend) map[enforce.Key]time.Time {
	t.Helper()
	es, err := b.Elements()
	if err != nil {
		t.Fatalf("%s: elements: %v", b.Name(), err)
	}
	out := make(map[enforce.Key]time.Time, len(es))
	for _, e := range es {
		out[e.Key()] = e.Expires
	}
	return out
}

// TestTTLChurn (issue 4, "TTL churn"): thousands of blocks with short TTLs
// that expire at the same instant, on the real backends — the XDP
// blocklist of a loaded fast path and an nft table in a throwaway
// namespace — driven by Manager.Run as wardlined runs it. CrowdSec's
// bouncer lost most of its enforcement for hours when its set elements
// expired in one batch (#509); here, at every reconcile pass, every
// backend must still hold every desired element (enforced/desired 1.0,
// nothing restored), nothing may leave the kernel before its decision
// expires, and afterwards both kernels hold exactly the long blocks.
// The status is sampled every few passes; Restored is cumulative, and a
// pass that finds an expected element missing counts it there, so
// Restored 0 at every sample means no pass saw a ratio below 1.
func TestTTLChurn(t *testing.T) {
	needRoot(t)
	const (
		short = 3000
		long  = 5
		// ttl leaves room for the policy evaluation of the batch, which
		// costs O(n²) in the Manager (about 1 s for 3000 alerts, 5 s
		// under -race).
		ttl      = 8 * time.Second
		interval = 100 * time.Millisecond
	)
	// Within this margin of the expiry the test does not demand the short
	// elements (its own reads race with the Manager's removal).
	const margin = 50 * time.Millisecond

	d, err := dataplane.Load(dataplane.Options{FlowTableSize: 1024, RingBytes: 1 << 20})
	if err != nil {
		t.Fatalf("load the fast path: %v", err)
	}
	defer d.Close()
	xb := xdpset.New(d.Lists())
	ns, err := lab.UnnamedNetns()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nb, err := nftset.Open(nftset.Config{NetNSFd: int(ns), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()

	// One policy blocks the attacker of every port_scan alert for ttl in
	// both backends. Alerts queued before Run starts are evaluated in
	// one batch, at one instant: their decisions expire together.
	m, err := enforce.New(enforce.Config{
		Guardrails: enforce.Guardrails{MaxNewPerMinute: 1 << 20, MaxActive: 1 << 20},
		Interval:   interval,
		Policies: []enforce.Policy{{ID: "churn", Match: enforce.Match{Types: []string{detect.TypePortScan}}, Action: enforce.PolicyBlock,
			TTL: enforce.Duration(ttl), Scope: enforce.ScopeAll, Stage: enforce.StageEnforce}},
		Logf: t.Logf,
	}, xb, nb)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}) }
	key := func(a netip.Addr) enforce.Key { return enforce.Key{Prefix: netip.PrefixFrom(a, 32), Dir: enforce.Src} }
	longAddr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 255, byte(i)}) }
	shortKeys, longKeys := map[enforce.Key]bool{}, map[enforce.Key]bool{}
	for i := range long {
		if _, err := m.AddDecision(enforce.DecisionRequest{Action: enforce.ActionBlock, Target: netip.PrefixFrom(longAddr(i), 32),
			Scope: enforce.ScopeAll, TTL: time.Hour, Reason: "churn: long"}, "test"); err != nil {
			t.Fatal(err)
		}
		longKeys[key(longAddr(i))] = true
	}
	for i := range short {
		m.HandleAlert(&detect.Alert{Type: detect.TypePortScan, Attacker: addr(i), Risk: 50, Signature: "churn", Fingerprint: fmt.Sprint("churn-", i)})
		shortKeys[key(addr(i))] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The decisions, and the instant they expire.
	deadline := time.Now().Add(10 * time.Second)
	var expires time.Time
	for {
		ds := m.Decisions()
		if len(ds) == short+long {
			for _, dc := range ds {
				if dc.Policy != "churn" {
					continue
				}
				if expires.IsZero() {
					expires = dc.Expires
				}
				if !dc.Expires.Equal(expires) {
					t.Fatalf("decision %v expires at %v, another at %v: not one batch", dc.Target, dc.Expires, expires)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d decisions in force after 10 s, want %d (status %+v)", len(ds), short+long, m.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if left := time.Until(expires); left < time.Second {
		t.Fatalf("the decisions took until %v before their expiry to be made: the test cannot watch them", left)
	}
	t.Logf("%d alerts became decisions in %v; they expire together at %s, %d long ones; watching until %v after that",
		short, time.Since(started).Round(time.Millisecond), expires.Format(time.StampMicro), long, time.Second+800*time.Millisecond)

	drop, longFrames := map[netip.Addr][]byte{}, map[netip.Addr][]byte{}
	for _, i := range []int{0, 1, short / 2, short - 1} {
		drop[addr(i)] = udpFrame(t, addr(i))
	}
	for i := range long {
		longFrames[longAddr(i)] = udpFrame(t, longAddr(i))
	}
	run := func(f []byte) uint32 {
		v, err := d.XDPProgram().Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			t.Fatalf("prog.Run: %v", err)
		}
		return v
	}
	checkStatus := func(when string) enforce.Status {
		t.Helper()
		s := m.Status()
		for _, b := range s.Backends {
			if b.Ratio != 1 || b.Restored != 0 || b.Errors != 0 || b.Foreign != 0 {
				t.Fatalf("%s: backend %s: ratio %v (%d of %d expected held), restored %d, foreign %d, errors %d (%s)",
					when, b.Name, b.Ratio, b.Enforced, b.Expected, b.Restored, b.Foreign, b.Errors, b.LastError)
			}
		}
		if s.ApplyErrors != 0 || s.AlertsLost != 0 {
			t.Fatalf("%s: %d apply errors, %d alerts lost", when, s.ApplyErrors, s.AlertsLost)
		}
		return s
	}

	// Through the expiry: every observation of the status (several per
	// pass) must show ratio 1 and nothing restored, and before the expiry
	// both kernels must hold every short element and drop its packets.
	passes := map[uint64]bool{}
	checkedBefore := 0
	end := expires.Add(time.Second + 800*time.Millisecond) // past the kernels' grace: they would have let go too
	for time.Now().Before(end) {
		s := checkStatus(fmt.Sprintf("%v before the expiry", time.Until(expires).Round(time.Millisecond)))
		for _, b := range s.Backends {
			passes[b.Passes] = true
		}
		if time.Now().Before(expires.Add(-margin)) {
			for _, b := range []enforce.Backend{xb, nb} {
				have := keysOf(t, b)
				if !time.Now().Before(expires.Add(-margin)) {
					break // the read took us into the margin
				}
				missing := 0
				for k := range shortKeys {
					if _, ok := have[k]; !ok {
						missing++
					}
				}
				if missing > 0 {
					t.Fatalf("%v before the expiry: %s holds %d elements, %d of the %d short blocks are missing", time.Until(expires), b.Name(), len(have), missing, short)
				}
			}
			if time.Now().Before(expires.Add(-margin)) {
				for a, f := range drop {
					if v := run(f); v != xdpDrop {
						t.Fatalf("%v before the expiry: a packet from %s got verdict %d, want drop", time.Until(expires), a, v)
					}
				}
				checkedBefore++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if checkedBefore < 3 || len(passes) < 5 {
		t.Fatalf("watched only %d times before the expiry and %d distinct passes: the machine is too slow for this test", checkedBefore, len(passes))
	}

	// After: the Manager has lifted the short blocks, both kernels hold
	// exactly the long ones, and the fast path passes the short ones'
	// packets again.
	s := checkStatus("after the expiry")
	if s.Decisions != long {
		t.Errorf("%d decisions in force after the expiry, want %d", s.Decisions, long)
	}
	for _, b := range s.Backends {
		if b.Desired != long || b.Removed != short || b.Added != short+long {
			t.Errorf("backend %s: desired %d, removed %d, added %d; want %d, %d, %d", b.Name, b.Desired, b.Removed, b.Added, long, short, short+long)
		}
		if !b.LastPass.After(expires) {
			t.Errorf("backend %s: last pass at %v, before the expiry", b.Name, b.LastPass)
		}
	}
	for _, b := range []enforce.Backend{xb, nb} {
		have := keysOf(t, b)
		if len(have) != long {
			t.Errorf("%s holds %d elements after the expiry, want the %d long ones", b.Name(), len(have), long)
		}
		for k := range longKeys {
			if exp, ok := have[k]; !ok || time.Until(exp) < 50*time.Minute {
				t.Errorf("%s: long block %v: present %v, expires %v", b.Name(), k, ok, exp)
			}
		}
	}
	for a, f := range drop {
		if v := run(f); v != xdpPass {
			t.Errorf("after the expiry a packet from %s got verdict %d, want pass", a, v)
		}
	}
	for a, f := range longFrames {
		if v := run(f); v != xdpDrop {
			t.Errorf("a packet from %s (long block) got verdict %d, want drop", a, v)
		}
	}
	t.Logf("%d distinct passes observed, %d checks of both kernels before the expiry; status after: %+v", len(passes), checkedBefore, s.Backends)
}
