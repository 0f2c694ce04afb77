// Package engine is Wardline's detection engine: it consumes the typed
// events of the fast path (live, inside wardlined) or of the offline pcap
// source (wardline analyze), parses payload snippets (DNS, TLS ClientHello,
// HTTP requests, first client payloads, ARP), assembles connections, runs
// every detector in one goroutine in event-time order, and post-processes
// their alerts: asset names, Community ID, dedupe, incidents, suppression
// and maintenance windows, time-to-detect. Alerts and (optionally) EVE
// flow/dns/tls/http events go to the sinks the caller configures.
package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/anomaly"
	"github.com/wardline/wardline/detect/beacon"
	"github.com/wardline/wardline/detect/communityid"
	"github.com/wardline/wardline/detect/dga"
	"github.com/wardline/wardline/detect/dnsfwd"
	"github.com/wardline/wardline/detect/dnstunnel"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/eve"
	"github.com/wardline/wardline/detect/exfil"
	"github.com/wardline/wardline/detect/ioc"
	"github.com/wardline/wardline/detect/lateral"
	"github.com/wardline/wardline/detect/mining"
	"github.com/wardline/wardline/detect/proto"
	"github.com/wardline/wardline/detect/scan"
)

// Config configures the engine. The zero value works (no home networks:
// direction-dependent detectors stay quiet).
type Config struct {
	HomeNets       []netip.Prefix
	Assets         []enrich.Asset
	IndicatorsFile string // IOC lists (JSON); empty: none
	// Live: time-to-detect is measured from the decisive packet's capture
	// time (wall clock). Offline it is the engine's own processing time
	// from the moment the event carrying the decisive packet arrived.
	Live bool

	DedupeWindow   time.Duration // same fingerprint within this merges (default 10m)
	IncidentWindow time.Duration // alerts of one attacker within this form an incident (default 30m)
	Suppress       []SuppressRule
	Maintenance    []MaintenanceWindow
	Disabled       []string // detector names to leave out
	SnippetLen     int      // the snippet length of the source (to tell a cut ClientHello); default 2048

	// Detector configurations (zero values: defaults).
	Scan    scan.Config
	Lateral lateral.Config
	Anomaly anomaly.Config
	Beacon  beacon.Config
	Exfil   exfil.Config
	Tunnel  dnstunnel.Config
	DGA     dga.Config
}

// SuppressRule drops matching alerts (counted per rule). Empty fields
// match anything.
type SuppressRule struct {
	Name     string
	Type     string
	Detector string
	Attacker netip.Prefix
	Victim   netip.Prefix
}

// MaintenanceWindow suppresses alerts (counted) while it lasts, for the
// listed prefixes (or everything when none are listed).
type MaintenanceWindow struct {
	Name     string
	From, To time.Time
	Prefixes []netip.Prefix
}

// Sinks receive the engine's output. Nil fields are skipped.
type Sinks struct {
	Alert func(*detect.Alert)
	EVE   *eve.Writer // flow, dns, tls, http and alert events
	// DNS receives every DNS message the engine parsed (after the
	// detectors), so that others need not parse it again.
	DNS func(*detect.DNSEvent)
}

// Engine is the detection engine. Handle* and Flush must be called from one
// goroutine; Stats and Incidents may be called from any.
type Engine struct {
	cfg   Config
	sinks Sinks
	inv   *enrich.Inventory
	iocs  *ioc.Index

	dets    []detect.Detector
	conns   []detect.ConnObserver
	dnsObs  []detect.DNSObserver
	tlsObs  []detect.TLSObserver
	httpObs []detect.HTTPObserver
	payObs  []detect.PayloadObserver
	arpObs  []detect.ARPObserver
	tickers []detect.Ticker

	now      time.Time // event time
	lastTick time.Time
	ingest   time.Time // wall clock when the current event arrived
	curKey   event.FlowKey
	haveKey  bool // curKey is the flow of the event being handled

	apps    map[event.FlowKey]*appState
	alerted map[event.FlowKey]bool

	dns   proto.DNSMessage // reused
	fwd   *dnsfwd.Matcher  // resolver forwards -> original client
	dnsEv detect.DNSEvent
	conn  detect.Conn

	mu        sync.Mutex
	dedupe    map[string]*detect.Alert
	incidents map[netip.Addr]*Incident
	incSeq    int
	stats     Stats
	ttd       []time.Duration // reservoir for percentiles
	ttdSeen   int
}

// Stats counts what the engine did.
type Stats struct {
	Flows, Snippets uint64
	ParseErrors     map[string]uint64 // by protocol
	Alerts          map[string]uint64 // emitted, by type
	Deduplicated    uint64
	Suppressed      map[string]uint64 // by rule or window name
	PendingTLS      int
	AppStateEvicted uint64
	Detectors       map[string]map[string]float64
	TimeToDetectP50 time.Duration
	TimeToDetectP95 time.Duration
	TimeToDetectMax time.Duration
}

// Incident groups the alerts of one attacker close in time.
type Incident struct {
	ID       string
	Attacker netip.Addr
	First    time.Time
	Last     time.Time
	Types    map[string]int
	MaxRisk  float64
	Alerts   int
}

type appState struct {
	info    detect.AppInfo
	tls     []byte // ClientHello being reassembled
	tlsWant int    // record length wanted (0: not reassembling)
	tlsAt   time.Time
	tlsKey  event.FlowKey
	seen    time.Time
}

const maxApps = 1 << 17

var errNoFile = errors.New("no file")

// New builds an engine with every detector not disabled.
func New(cfg Config, sinks Sinks, logf func(string, ...any)) (*Engine, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.DedupeWindow == 0 {
		cfg.DedupeWindow = 10 * time.Minute
	}
	if cfg.IncidentWindow == 0 {
		cfg.IncidentWindow = 30 * time.Minute
	}
	if cfg.SnippetLen == 0 {
		cfg.SnippetLen = 2048
	}
	e := &Engine{cfg: cfg, sinks: sinks, inv: enrich.New(cfg.HomeNets, cfg.Assets), iocs: ioc.NewIndex(),
		apps: map[event.FlowKey]*appState{}, alerted: map[event.FlowKey]bool{}, fwd: dnsfwd.New(10*time.Second, 0),
		dedupe: map[string]*detect.Alert{}, incidents: map[netip.Addr]*Incident{},
		stats: Stats{ParseErrors: map[string]uint64{}, Alerts: map[string]uint64{}, Suppressed: map[string]uint64{}}}
	if cfg.IndicatorsFile != "" {
		if err := e.iocs.LoadFile(cfg.IndicatorsFile); err != nil {
			return nil, err
		}
	}
	env := detect.Env{Emit: e.emit, Inv: e.inv, Logf: logf}
	disabled := map[string]bool{}
	for _, d := range cfg.Disabled {
		disabled[d] = true
	}
	for _, d := range []detect.Detector{
		ioc.New(e.iocs, 0, env),
		scan.New(cfg.Scan, env),
		lateral.New(cfg.Lateral, env),
		beacon.New(cfg.Beacon, env),
		exfil.New(cfg.Exfil, env),
		dnstunnel.New(cfg.Tunnel, env),
		dga.New(cfg.DGA, env),
		mining.New(0, env),
		anomaly.New(cfg.Anomaly, env),
	} {
		if disabled[d.Name()] {
			continue
		}
		e.add(d)
	}
	for name := range disabled {
		if !slices.Contains(DetectorNames(), name) {
			return nil, fmt.Errorf("disable detector %q: no such detector (have %s)", name, strings.Join(DetectorNames(), ", "))
		}
	}
	return e, nil
}

// DetectorNames lists the detectors the engine knows.
func DetectorNames() []string {
	return []string{"ioc", "scan", "lateral", "beacon", "exfil", "dnstunnel", "dga", "mining", "anomaly"}
}

func (e *Engine) add(d detect.Detector) {
	e.dets = append(e.dets, d)
	if o, ok := d.(detect.ConnObserver); ok {
		e.conns = append(e.conns, o)
	}
	if o, ok := d.(detect.DNSObserver); ok {
		e.dnsObs = append(e.dnsObs, o)
	}
	if o, ok := d.(detect.TLSObserver); ok {
		e.tlsObs = append(e.tlsObs, o)
	}
	if o, ok := d.(detect.HTTPObserver); ok {
		e.httpObs = append(e.httpObs, o)
	}
	if o, ok := d.(detect.PayloadObserver); ok {
		e.payObs = append(e.payObs, o)
	}
	if o, ok := d.(detect.ARPObserver); ok {
		e.arpObs = append(e.arpObs, o)
	}
	if o, ok := d.(detect.Ticker); ok {
		e.tickers = append(e.tickers, o)
	}
}

// Inventory returns the engine's asset inventory.
func (e *Engine) Inventory() *enrich.Inventory { return e.inv }

// ReloadIndicators reloads the IOC file (safe while events flow).
func (e *Engine) ReloadIndicators() error {
	if e.cfg.IndicatorsFile == "" {
		return fmt.Errorf("reload indicators: %w configured", errNoFile)
	}
	return e.iocs.LoadFile(e.cfg.IndicatorsFile)
}

// advance moves event time forward and ticks the detectors about once per
// second of event time.
func (e *Engine) advance(t time.Time) {
	if t.After(e.now) {
		e.now = t
	}
	if e.lastTick.IsZero() {
		e.lastTick = e.now
		return
	}
	if e.now.Sub(e.lastTick) >= time.Second {
		e.lastTick = e.now
		for _, tk := range e.tickers {
			tk.Tick(e.now)
		}
		e.expireApps()
		e.fwd.Expire(e.now)
		e.collectDetectorStats()
	}
}

// collectDetectorStats copies the detectors' own counters for Stats (the
// detectors are not safe to read from other goroutines).
func (e *Engine) collectDetectorStats() {
	m := map[string]map[string]float64{}
	for _, d := range e.dets {
		if s, ok := d.(detect.Statser); ok {
			m[d.Name()] = s.Stats()
		}
	}
	e.mu.Lock()
	e.stats.Detectors = m
	e.mu.Unlock()
}

func canonical(k event.FlowKey) event.FlowKey {
	a, b := netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort)
	if b.Compare(a) < 0 {
		k.Src, k.Dst, k.SrcPort, k.DstPort = k.Dst, k.Src, k.DstPort, k.SrcPort
	}
	return k
}

func (e *Engine) app(k event.FlowKey, t time.Time) *appState {
	ck := canonical(k)
	a := e.apps[ck]
	if a == nil {
		if len(e.apps) >= maxApps {
			e.expireApps()
			if len(e.apps) >= maxApps {
				for k := range e.apps { // evict an arbitrary one (counted)
					delete(e.apps, k)
					e.stats.AppStateEvicted++
					break
				}
			}
		}
		a = &appState{}
		e.apps[ck] = a
	}
	a.seen = t
	return a
}

// expireApps finishes pending ClientHellos and forgets application state
// of flows quiet for two minutes (their final record normally removes it
// much earlier).
func (e *Engine) expireApps() {
	for k, a := range e.apps {
		if a.tlsWant > 0 && e.now.Sub(a.tlsAt) > 2*time.Second {
			e.finishTLS(a)
		}
		if e.now.Sub(a.seen) > 2*time.Minute {
			delete(e.apps, k)
		}
	}
}

// HandleFlow processes a flow record.
func (e *Engine) HandleFlow(f *event.Flow) {
	e.ingest = time.Now()
	e.mu.Lock()
	e.stats.Flows++
	e.mu.Unlock()
	e.advance(f.LastSeen)
	e.conn = detect.NewConn(f)
	c := &e.conn
	e.curKey, e.haveKey = f.Key, true
	defer func() { e.haveKey = false }()
	c.CommunityID = communityid.ID(0, c.Key)
	c.Direction = e.direction(c.Key.Src, c.Key.Dst)
	ck := canonical(c.Key)
	if a := e.apps[ck]; a != nil {
		if a.tlsWant > 0 {
			e.finishTLS(a)
		}
		info := a.info
		c.App = &info
		if c.Final {
			delete(e.apps, ck)
		}
	}
	for _, o := range e.conns {
		o.OnConn(c)
	}
	if c.Final && e.sinks.EVE != nil {
		e.sinks.EVE.Flow(c, e.alerted[ck])
		delete(e.alerted, ck)
	}
}

func (e *Engine) direction(src, dst netip.Addr) detect.Direction {
	sh, dh := e.inv.IsHome(src), e.inv.IsHome(dst)
	switch {
	case sh && dh:
		return detect.Internal
	case sh:
		return detect.Outbound
	case dh:
		return detect.Inbound
	}
	return detect.External
}

func (e *Engine) parseError(what string) {
	e.mu.Lock()
	e.stats.ParseErrors[what]++
	e.mu.Unlock()
}

// HandleSnippet processes a payload snippet.
func (e *Engine) HandleSnippet(s *event.Snippet) {
	e.ingest = time.Now()
	e.mu.Lock()
	e.stats.Snippets++
	e.mu.Unlock()
	e.advance(s.Time)
	if s.Kind != event.SnippetARP {
		e.curKey, e.haveKey = s.Key, true
		defer func() { e.haveKey = false }()
	}
	switch s.Kind {
	case event.SnippetDNS:
		e.onDNS(s)
	case event.SnippetTLS:
		e.onTLS(s)
	case event.SnippetHTTP:
		e.onHTTP(s)
	case event.SnippetPayload:
		e.onPayload(s)
	case event.SnippetARP:
		e.onARP(s)
	case event.SnippetDHCP:
		e.onDHCP(s)
	}
}

func (e *Engine) onDNS(s *event.Snippet) {
	err := e.dns.Parse(s.Data, s.Key.Proto == event.ProtoTCP)
	if err != nil && !errors.Is(err, proto.ErrTruncated) {
		e.parseError("dns")
		return
	}
	if len(e.dns.Questions) == 0 && len(e.dns.Answers) == 0 {
		e.parseError("dns")
		return
	}
	m := &e.dns
	d := &e.dnsEv
	msgLen := int(s.PayloadLen)
	if s.Key.Proto == event.ProtoTCP {
		msgLen -= 2 // the TCP length prefix
	}
	*d = detect.DNSEvent{Time: s.Time, Proto: s.Key.Proto, Response: m.Response, ID: m.ID, RCode: uint16(m.RCode),
		RCodeName: m.RCode.String(), Len: max(msgLen, 0), Truncated: s.Truncated || err != nil, Answers: d.Answers[:0]}
	if m.Response {
		d.Client, d.ClientPort, d.Server = s.Key.Dst, s.Key.DstPort, s.Key.Src
	} else {
		d.Client, d.ClientPort, d.Server = s.Key.Src, s.Key.SrcPort, s.Key.Dst
	}
	if len(m.Questions) > 0 {
		q := m.Questions[0]
		d.QName, d.QType, d.QTypeName = q.Name, uint16(q.Type), q.Type.String()
	}
	for _, a := range m.Answers {
		da := detect.DNSAnswer{Name: a.Name, Type: uint16(a.Type), TTL: a.TTL, Addr: a.Addr, Data: a.Target}
		if len(a.TXT) > 0 {
			da.Data = a.TXT[0]
		}
		d.Answers = append(d.Answers, da)
		if a.Addr.IsValid() && m.Response {
			e.inv.Learn(a.Addr, a.Name, "dns", s.Time)
		}
	}
	e.fwd.Annotate(d)
	for _, o := range e.dnsObs {
		o.OnDNS(d)
	}
	if e.sinks.DNS != nil {
		e.sinks.DNS(d)
	}
	if e.sinks.EVE != nil {
		k := s.Key
		e.sinks.EVE.DNS(d, &k, communityid.ID(0, k))
	}
}

func (e *Engine) onTLS(s *event.Snippet) {
	a := e.app(s.Key, s.Time)
	if !s.Continuation || s.Offset == 0 {
		a.tls = append(a.tls[:0], s.Data...)
		a.tlsKey, a.tlsAt = s.Key, s.Time
		a.tlsWant = 0
		if len(s.Data) >= 5 {
			a.tlsWant = min(5+int(s.Data[3])<<8|int(s.Data[4]), e.cfg.SnippetLen)
		}
	} else if int(s.Offset) == len(a.tls) {
		a.tls = append(a.tls, s.Data...)
	}
	// Done when the record is complete, or when this packet was all the
	// client sent and no continuation can follow.
	if len(a.tls) >= a.tlsWant || s.Truncated {
		e.finishTLS(a)
	}
}

func (e *Engine) finishTLS(a *appState) {
	b := a.tls
	a.tlsWant = 0
	ch, err := proto.ParseClientHello(b)
	if err != nil && !errors.Is(err, proto.ErrTruncated) {
		e.parseError("tls")
		return
	}
	t := &detect.TLSEvent{Time: a.tlsAt, Key: a.tlsKey, SNI: ch.SNI, ALPN: ch.ALPN, Version: tlsVersion(&ch)}
	if err == nil {
		// A cut hello gives partial lists: no fingerprint rather than a
		// wrong one.
		t.JA3, t.JA3Hash = ch.JA3()
		t.JA4 = ch.JA4(proto.JA4TCP)
	} else {
		e.parseError("tls_truncated")
	}
	a.info.Service, a.info.SNI, a.info.JA3, a.info.JA4 = "tls", ch.SNI, t.JA3Hash, t.JA4
	for _, o := range e.tlsObs {
		o.OnTLS(t)
	}
	if e.sinks.EVE != nil {
		e.sinks.EVE.TLS(t, communityid.ID(0, t.Key))
	}
}

func tlsVersion(ch *proto.ClientHello) string {
	v := ch.LegacyVersion
	for _, sv := range ch.SupportedVersions {
		if !proto.IsGREASE(sv) && sv > v {
			v = sv
		}
	}
	switch v {
	case 0x0304:
		return "TLS 1.3"
	case 0x0303:
		return "TLS 1.2"
	case 0x0302:
		return "TLS 1.1"
	case 0x0301:
		return "TLS 1.0"
	case 0x0300:
		return "SSLv3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func (e *Engine) onHTTP(s *event.Snippet) {
	r, err := proto.ParseHTTPRequest(s.Data)
	if err != nil && !errors.Is(err, proto.ErrTruncated) {
		e.parseError("http")
		return
	}
	h := &detect.HTTPEvent{Time: s.Time, Key: s.Key, Method: r.Method, URI: r.URI, Host: r.Host, UserAgent: r.UserAgent}
	a := e.app(s.Key, s.Time)
	a.info.Service, a.info.HTTPHost, a.info.UserAgent, a.info.HTTPURI = "http", r.Host, r.UserAgent, r.URI
	for _, o := range e.httpObs {
		o.OnHTTP(h)
	}
	if e.sinks.EVE != nil {
		e.sinks.EVE.HTTP(h, communityid.ID(0, s.Key))
	}
}

func (e *Engine) onPayload(s *event.Snippet) {
	p := &detect.PayloadEvent{Time: s.Time, Key: s.Key, Data: s.Data}
	if m, ok := proto.StratumMethod(s.Data); ok {
		p.Service, p.Detail = "stratum", m
	} else if sw, ok := proto.SSHBanner(s.Data); ok {
		p.Service, p.Detail = "ssh", sw
	}
	if p.Service != "" {
		e.app(s.Key, s.Time).info.Service = p.Service
	}
	for _, o := range e.payObs {
		o.OnPayload(p)
	}
}

func (e *Engine) onARP(s *event.Snippet) {
	b := s.Data
	if len(b) < 28 {
		e.parseError("arp")
		return
	}
	a := &detect.ARPEvent{Time: s.Time, Op: uint16(b[6])<<8 | uint16(b[7]), SenderMAC: net.HardwareAddr(b[8:14]),
		SenderIP: netip.AddrFrom4([4]byte(b[14:18])), TargetIP: netip.AddrFrom4([4]byte(b[24:28]))}
	for _, o := range e.arpObs {
		o.OnARP(a)
	}
}

// onDHCP learns host names for passive discovery: a client's Request or
// the server's Ack names the address the client will use.
func (e *Engine) onDHCP(s *event.Snippet) {
	d, err := proto.ParseDHCP(s.Data)
	if err != nil {
		e.parseError("dhcp")
		return
	}
	if d.Hostname != "" {
		e.inv.Learn(d.Addr(), d.Hostname, "dhcp", s.Time)
	}
}

// Flush finishes pending work at the end of the input (offline) or on
// shutdown: pending ClientHellos are parsed and detectors ticked.
func (e *Engine) Flush() {
	for _, a := range e.apps {
		if a.tlsWant > 0 {
			e.finishTLS(a)
		}
	}
	for _, tk := range e.tickers {
		tk.Tick(e.now)
	}
	e.collectDetectorStats()
	if e.sinks.EVE != nil {
		e.sinks.EVE.Flush()
	}
}

// emit is every detector's Env.Emit.
func (e *Engine) emit(a *detect.Alert) {
	for _, r := range e.cfg.Suppress {
		if r.matches(a) {
			e.mu.Lock()
			e.stats.Suppressed["rule:"+r.Name]++
			e.mu.Unlock()
			return
		}
	}
	for _, w := range e.cfg.Maintenance {
		if w.covers(a) {
			e.mu.Lock()
			e.stats.Suppressed["maintenance:"+w.Name]++
			e.mu.Unlock()
			return
		}
	}
	if a.Risk == 0 && len(a.Reasons) > 0 {
		a.Score()
	}
	a.Fingerprint = fingerprint(a)
	// An alert raised while handling a flow's event names that flow as
	// the decisive one, when the attacker is one of its ends.
	if a.Flow == nil && e.haveKey && (e.curKey.Src == a.Attacker || e.curKey.Dst == a.Attacker) {
		a.Flow = detect.NewFlowRef(e.curKey)
	}
	if a.Flow != nil {
		k := a.Flow.Key()
		a.Flow.CommunityID = communityid.ID(0, k)
		e.alerted[canonical(k)] = true
	}
	a.AttackerAsset = e.inv.Name(a.Attacker)
	named := false
	for _, v := range a.Victims {
		n := e.inv.Name(v)
		a.VictimAssets = append(a.VictimAssets, n)
		named = named || n != ""
	}
	if !named {
		a.VictimAssets = nil
	}
	if e.cfg.Live {
		a.TimeToDetect = time.Since(a.Time)
	} else {
		a.TimeToDetect = time.Since(e.ingest)
	}
	e.mu.Lock()
	if old, ok := e.dedupe[a.Fingerprint]; ok && a.Time.Sub(old.Time) < e.cfg.DedupeWindow {
		old.Count++
		e.stats.Deduplicated++
		e.mu.Unlock()
		return
	}
	a.Count = 1
	e.dedupe[a.Fingerprint] = a
	for fp, old := range e.dedupe { // bounded: old fingerprints go
		if a.Time.Sub(old.Time) > e.cfg.DedupeWindow {
			delete(e.dedupe, fp)
		}
	}
	inc := e.incidents[a.Attacker]
	if inc == nil || a.Time.Sub(inc.Last) > e.cfg.IncidentWindow {
		e.incSeq++
		inc = &Incident{ID: fmt.Sprintf("inc-%s-%d", a.Attacker, e.incSeq), Attacker: a.Attacker, First: a.Time, Types: map[string]int{}}
		e.incidents[a.Attacker] = inc
	}
	inc.Last, inc.Alerts = a.Time, inc.Alerts+1
	inc.Types[a.Type]++
	inc.MaxRisk = max(inc.MaxRisk, a.Risk)
	a.Incident = inc.ID
	e.stats.Alerts[a.Type]++
	e.recordTTD(a.TimeToDetect)
	e.mu.Unlock()
	if e.sinks.Alert != nil {
		e.sinks.Alert(a)
	}
	if e.sinks.EVE != nil {
		e.sinks.EVE.Alert(a)
	}
}

func fingerprint(a *detect.Alert) string {
	v := ""
	if len(a.Victims) == 1 {
		v = a.Victims[0].String()
	}
	return fmt.Sprintf("%s|%s|%s|%s|%s", a.Detector, a.Type, a.Subtype, a.Attacker, v)
}

func (e *Engine) recordTTD(d time.Duration) {
	e.ttdSeen++
	if len(e.ttd) < 4096 {
		e.ttd = append(e.ttd, d)
		return
	}
	// Reservoir sampling keeps the percentiles honest for long runs.
	if i := int(uint64(e.ttdSeen*2654435761) % uint64(e.ttdSeen)); i < len(e.ttd) {
		e.ttd[i] = d
	}
}

func (r SuppressRule) matches(a *detect.Alert) bool {
	if r.Type != "" && r.Type != a.Type {
		return false
	}
	if r.Detector != "" && r.Detector != a.Detector {
		return false
	}
	if r.Attacker.IsValid() && !r.Attacker.Contains(a.Attacker) {
		return false
	}
	if r.Victim.IsValid() {
		hit := false
		for _, v := range a.Victims {
			hit = hit || r.Victim.Contains(v)
		}
		if !hit {
			return false
		}
	}
	return true
}

func (w MaintenanceWindow) covers(a *detect.Alert) bool {
	if a.Time.Before(w.From) || !a.Time.Before(w.To) {
		return false
	}
	if len(w.Prefixes) == 0 {
		return true
	}
	for _, p := range w.Prefixes {
		if p.Contains(a.Attacker) {
			return true
		}
		for _, v := range a.Victims {
			if p.Contains(v) {
				return true
			}
		}
	}
	return false
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.ParseErrors = copyMap(e.stats.ParseErrors)
	s.Alerts = copyMap(e.stats.Alerts)
	s.Suppressed = copyMap(e.stats.Suppressed)
	pending := 0
	for _, a := range e.apps {
		if a.tlsWant > 0 {
			pending++
		}
	}
	s.PendingTLS = pending
	if len(e.ttd) > 0 {
		v := append([]time.Duration(nil), e.ttd...)
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		s.TimeToDetectP50 = v[len(v)/2]
		s.TimeToDetectP95 = v[min(len(v)-1, len(v)*95/100)]
		s.TimeToDetectMax = v[len(v)-1]
	}
	return s
}

func copyMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Incidents returns the incidents, newest first.
func (e *Engine) Incidents() []Incident {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Incident, 0, len(e.incidents))
	for _, i := range e.incidents {
		c := *i
		c.Types = copyMap(i.Types)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Last.After(out[j].Last) })
	return out
}
