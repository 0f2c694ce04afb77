package exfil

import (
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

const mib = 1 << 20

var (
	home    = netip.MustParsePrefix("10.1.0.0/16")
	client  = netip.MustParseAddr("10.1.0.10")
	client2 = netip.MustParseAddr("10.1.0.11")
	nas     = netip.MustParseAddr("10.1.0.20")
	cloud   = netip.MustParseAddr("203.0.113.20")
	cloud2  = netip.MustParseAddr("203.0.113.21")
	// A Wednesday.
	wed1000 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	wed0230 = time.Date(2026, 11, 25, 2, 30, 0, 0, time.UTC)
	sat1100 = time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)
)

type harness struct {
	d      *Detector
	inv    *enrich.Inventory
	alerts []*detect.Alert
	port   uint16
}

func newHarness(tb testing.TB, cfg Config) *harness {
	h := &harness{inv: enrich.New([]netip.Prefix{home}, nil), port: 40000}
	h.d = New(cfg, detect.Env{Inv: h.inv, Logf: tb.Logf, Emit: func(a *detect.Alert) { h.alerts = append(h.alerts, a) }})
	return h
}

// rec is one connection record.
type rec struct {
	src, dst netip.Addr
	dport    uint16
	start    time.Time
	end      time.Time
	out, in  uint64 // cumulative
	interim  bool
	sport    uint16 // 0: a new connection
	sni      string
}

func (h *harness) conn(r rec) *detect.Conn {
	if r.dport == 0 {
		r.dport = 443
	}
	if r.sport == 0 {
		h.port++
		r.sport = h.port
	}
	if r.end.IsZero() {
		r.end = r.start.Add(20 * time.Second)
	}
	c := &detect.Conn{
		Key:   event.FlowKey{Src: r.src, Dst: r.dst, SrcPort: r.sport, DstPort: r.dport, Proto: event.ProtoTCP},
		Start: r.start, End: r.end, Final: !r.interim, Reason: event.ReasonFIN,
		OrigPkts: r.out/1400 + 1, OrigBytes: r.out, RespPkts: r.in/1400 + 1, RespBytes: r.in,
		OrigFlags: event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin, RespFlags: event.TCPSyn | event.TCPAck | event.TCPPsh | event.TCPFin,
		State: detect.StateSF,
	}
	if r.interim {
		c.Reason, c.State = event.ReasonActive, detect.StateS1
	}
	switch sh, dh := h.inv.IsHome(r.src), h.inv.IsHome(r.dst); {
	case sh && dh:
		c.Direction = detect.Internal
	case sh:
		c.Direction = detect.Outbound
	case dh:
		c.Direction = detect.Inbound
	default:
		c.Direction = detect.External
	}
	if r.sni != "" {
		c.App = &detect.AppInfo{Service: "tls", SNI: r.sni}
	}
	return c
}

func (h *harness) feed(rs ...rec) {
	for _, r := range rs {
		h.d.OnConn(h.conn(r))
	}
}

// upload is one HTTPS upload of n bytes with ACK-sized replies.
func upload(src netip.Addr, at time.Time, n uint64) rec {
	return rec{src: src, dst: cloud, start: at, end: at.Add(16 * time.Second), out: n, in: n / 300}
}

func TestDetect(t *testing.T) {
	type want struct {
		subtype  string // "" = no alert
		mitre    detect.MITRE
		victims  []netip.Addr
		minRisk  float64
		maxRisk  float64
		bytesOut float64 // Evidence bytes_out_window, ±1 MiB (0: unchecked)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		recs func() []rec
		want want
	}{
		{
			name: "first-time 32 MiB HTTPS upload in business hours",
			recs: func() []rec { return []rec{upload(client, wed1000, 34*mib)} },
			want: want{subtype: SubtypeUpload, mitre: detect.MITREExfilWeb, victims: []netip.Addr{cloud}, minRisk: 55, maxRisk: 70, bytesOut: 34 * mib},
		},
		{
			name: "the same upload at 02:30 UTC",
			recs: func() []rec { return []rec{upload(client, wed0230, 34*mib)} },
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilWeb, victims: []netip.Addr{cloud}, minRisk: 75},
		},
		{
			name: "the same upload on a Saturday morning",
			recs: func() []rec { return []rec{upload(client, sat1100, 34*mib)} },
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilWeb, minRisk: 75},
		},
		{
			name: "10:00 UTC is off hours for a site in Los Angeles",
			cfg:  Config{Hours: mustHours(t, "Mon-Fri", "08:00-18:00", "America/Los_Angeles")},
			recs: func() []rec { return []rec{upload(client, wed1000, 34*mib)} },
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilWeb, minRisk: 75},
		},
		{
			name: "upload to a raw TCP port is exfiltration over a C2 channel",
			recs: func() []rec {
				r := upload(client, wed0230, 40*mib)
				r.dport = 4444
				return []rec{r}
			},
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilC2},
		},
		{
			name: "internal 45 MB backup to the NAS is not exfiltration",
			recs: func() []rec {
				return []rec{{src: client2, dst: nas, dport: 5201, start: wed0230, end: wed0230.Add(30 * time.Second), out: 45e6, in: 100e3}}
			},
		},
		{
			name: "a large download is not an upload",
			recs: func() []rec {
				return []rec{{src: client, dst: cloud, start: wed0230, out: 2 * mib, in: 500 * mib}}
			},
		},
		{
			name: "an hour-long video call sends a lot, but receives as much",
			recs: func() []rec {
				return []rec{{src: client, dst: cloud, dport: 3478, start: wed0230, end: wed0230.Add(time.Hour), out: 600 * mib, in: 700 * mib}}
			},
		},
		{
			name: "10 MiB upload is below the floor",
			recs: func() []rec { return []rec{upload(client, wed0230, 10*mib)} },
		},
		{
			name: "1 MiB every 10 minutes for a day never fills the window",
			recs: func() []rec {
				var rs []rec
				for i := 0; i < 144; i++ {
					rs = append(rs, upload(client, wed0230.Add(time.Duration(i)*10*time.Minute), mib))
				}
				return rs
			},
		},
		{
			name: "40 MiB spread over twenty destinations adds up",
			recs: func() []rec {
				var rs []rec
				for i := 0; i < 20; i++ {
					dst := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
					rs = append(rs, rec{src: client, dst: dst, start: wed0230.Add(time.Duration(i) * time.Minute), out: 2 * mib, in: 20e3})
				}
				return rs
			},
			// The alert comes as soon as the window holds 16 MiB.
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilWeb, bytesOut: 16 * mib},
		},
		{
			name: "a long upload is seen through its interim records, and counted once",
			recs: func() []rec {
				var rs []rec
				for i := 1; i <= 20; i++ { // 2 MiB/s, an interim record every 10 s
					rs = append(rs, rec{src: client, dst: cloud, sport: 50000, start: wed0230, end: wed0230.Add(time.Duration(i) * 10 * time.Second),
						out: uint64(i) * 20 * mib, in: uint64(i) * 70e3, interim: i < 20})
				}
				return rs
			},
			// The alert comes with the first interim record (20 MiB): the
			// flow is not over yet.
			want: want{subtype: SubtypeUploadOffHours, mitre: detect.MITREExfilWeb, bytesOut: 20 * mib},
		},
		{
			name: "one alert per host per window, again after it",
			recs: func() []rec {
				return []rec{upload(client, wed0230, 34*mib), upload(client, wed0230.Add(10*time.Minute), 34*mib),
					upload(client, wed0230.Add(3*time.Hour), 34*mib)}
			},
			want: want{subtype: SubtypeUploadOffHours},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.feed(tc.recs()...)
			if tc.want.subtype == "" {
				for _, a := range h.alerts {
					t.Errorf("unexpected alert: %s: %s", a.Signature, a.Explain())
				}
				return
			}
			if len(h.alerts) == 0 {
				t.Fatalf("no alert (stats %v)", h.d.Stats())
			}
			if strings.HasPrefix(tc.name, "one alert per host") && len(h.alerts) != 2 {
				t.Errorf("got %d alerts, want 2 (one per window)", len(h.alerts))
			} else if !strings.HasPrefix(tc.name, "one alert per host") && len(h.alerts) != 1 {
				t.Errorf("got %d alerts, want 1", len(h.alerts))
			}
			a := h.alerts[0]
			t.Logf("%s\n%s", a.Signature, a.Explain())
			if a.Type != detect.TypeExfiltration || a.Subtype != tc.want.subtype || a.Attacker.Unmap() != a.Attacker || a.Detector != "exfil" {
				t.Errorf("type/subtype/detector = %s/%s/%s, want %s/%s/exfil", a.Type, a.Subtype, a.Detector, detect.TypeExfiltration, tc.want.subtype)
			}
			if tc.want.mitre != (detect.MITRE{}) && a.MITRE != tc.want.mitre {
				t.Errorf("MITRE %v, want %v", a.MITRE, tc.want.mitre)
			}
			if tc.want.victims != nil && (len(a.Victims) != len(tc.want.victims) || a.Victims[0] != tc.want.victims[0]) {
				t.Errorf("victims %v, want %v", a.Victims, tc.want.victims)
			}
			if a.Risk < max(55, tc.want.minRisk) || (tc.want.maxRisk > 0 && a.Risk > tc.want.maxRisk) {
				t.Errorf("risk %.1f, want %.0f..%.0f", a.Risk, max(55, tc.want.minRisk), tc.want.maxRisk)
			}
			if b := tc.want.bytesOut; b > 0 {
				if got := a.Evidence["bytes_out_window"].(float64); got < b-mib || got > b+mib {
					t.Errorf("bytes_out_window %.0f, want %.0f", got, b)
				}
			}
			checkExplained(t, a)
		})
	}
}

func mustHours(t *testing.T, days, hours, zone string) BusinessHours {
	t.Helper()
	b, err := ParseBusinessHours(days, hours, zone)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkExplained(t *testing.T, a *detect.Alert) {
	t.Helper()
	want := []string{"upload_volume", "baseline_deviation", "asymmetry", "off_hours"}
	if len(a.Reasons) != len(want) {
		t.Fatalf("reasons %+v, want %v", a.Reasons, want)
	}
	sum := 0.0
	for i, r := range a.Reasons {
		if r.Feature != want[i] || r.Why == "" || r.Points < 0 {
			t.Errorf("reason %d = %+v, want %s with an explanation", i, r, want[i])
		}
		sum += r.Points
	}
	if d := a.Risk - min(100, sum); d > 1e-9 || d < -1e-9 {
		t.Errorf("risk %v is not the sum of its contributions %v", a.Risk, sum)
	}
	if a.Flow == nil || a.Time.IsZero() || a.Confidence <= 0 || a.Severity == 0 || len(a.Victims) == 0 {
		t.Errorf("incomplete alert %+v", a)
	}
	for _, k := range []string{"bytes_out_window", "top_destination", "out_in_ratio", "baseline_bytes_per_window", "local_time", "business_hours"} {
		if _, ok := a.Evidence[k]; !ok {
			t.Errorf("evidence lacks %s", k)
		}
	}
}

// TestBaseline: a host that uploads ~40 MiB every weekday at 10:00 has
// that in its baseline and scores lower than a host uploading for the
// first time; with the default threshold only the newcomer alerts.
func TestBaseline(t *testing.T) {
	run := func(cfg Config) (habitual, newcomer *detect.Alert, h *harness) {
		h = newHarness(t, cfg)
		rng := rand.New(rand.NewSource(1))
		start := wed1000.AddDate(0, 0, -21)
		for day := 0; day < 21; day++ {
			at := start.AddDate(0, 0, day)
			// Some small traffic through the day, every day, and the
			// upload on weekdays, in time order.
			for hr := 0; hr < 24; hr += 3 {
				h.feed(rec{src: client, dst: cloud2, start: at.Add(time.Duration(hr-10) * time.Hour), out: 200e3, in: 2e6})
				if wd := at.Weekday(); hr == 9 && wd != time.Saturday && wd != time.Sunday {
					n := uint64(36*mib + rng.Intn(8*mib))
					h.feed(upload(client, at.Add(time.Duration(rng.Intn(20))*time.Minute), n))
				}
			}
		}
		h.alerts = nil
		h.feed(upload(client, wed1000, 40*mib), upload(client2, wed1000, 40*mib))
		for _, a := range h.alerts {
			switch a.Attacker {
			case client:
				habitual = a
			case client2:
				newcomer = a
			}
		}
		return habitual, newcomer, h
	}
	habitual, newcomer, h := run(Config{Threshold: 1})
	if habitual == nil || newcomer == nil {
		t.Fatalf("with threshold 1, want both scored; got %v %v", habitual, newcomer)
	}
	t.Logf("habitual uploader: %s\n  %s", habitual.Signature, habitual.Explain())
	t.Logf("first-time uploader: %s\n  %s", newcomer.Signature, newcomer.Explain())
	if habitual.Risk >= newcomer.Risk-15 {
		t.Errorf("habitual uploader risk %.1f, first-time uploader %.1f: want the habit at least 15 lower", habitual.Risk, newcomer.Risk)
	}
	// Weekends teach zeros at 10:00 too, so the habit is ~5/7 of a day's upload.
	if dev := habitual.Evidence["baseline_deviation"].(float64); dev > 2 {
		t.Errorf("habitual uploader is %.1fx its baseline, want under 2", dev)
	}
	if days := habitual.Evidence["baseline_hours_observed"].(float64); days < 20 {
		t.Errorf("baseline learned over %v hours of 10:00, want the 21 days", days)
	}
	if st := h.d.Stats(); st["hosts_tracked"] != 2 {
		t.Errorf("stats %v", st)
	}

	habitual, newcomer, _ = run(Config{})
	if habitual != nil || newcomer == nil {
		t.Errorf("with the default threshold want only the first-time uploader; got habitual=%v newcomer=%v", habitual != nil, newcomer != nil)
	}
}

// TestBaselineDecays: hours without uploads are learned as zero, so an
// old habit fades.
func TestBaselineDecays(t *testing.T) {
	h := newHarness(t, Config{})
	start := wed1000.AddDate(0, 0, -60)
	for day := 0; day < 14; day++ { // a habit two months ago
		h.feed(upload(client, start.AddDate(0, 0, day), 40*mib))
	}
	h.alerts = nil
	h.feed(upload(client, wed1000, 40*mib))
	if len(h.alerts) != 1 {
		t.Fatalf("got %d alerts after the habit faded, want 1", len(h.alerts))
	}
	if dev := h.alerts[0].Evidence["baseline_deviation"].(float64); dev < 4 {
		t.Errorf("deviation %.1f, want the faded habit to count little (>= 4x)", dev)
	}
}

func TestBoundedState(t *testing.T) {
	h := newHarness(t, Config{MaxHosts: 10, MaxFlows: 5, HostIdle: time.Hour, FlowIdle: time.Minute})
	for i := 0; i < 30; i++ {
		src := netip.AddrFrom4([4]byte{10, 1, 1, byte(i)})
		h.feed(rec{src: src, dst: cloud, start: wed1000, out: 1000, in: 1000, interim: true, sport: uint16(1000 + i)})
	}
	st := h.d.Stats()
	if st["hosts_tracked"] != 5 || st["flows_followed"] != 5 || st["flows_untracked"] != 25 {
		t.Errorf("after 30 long flows: %v, want 5 hosts, 5 flows followed, 25 untracked", st)
	}
	// The final records of the untracked flows count them whole.
	for i := 0; i < 30; i++ {
		src := netip.AddrFrom4([4]byte{10, 1, 1, byte(i)})
		h.feed(rec{src: src, dst: cloud, start: wed1000, end: wed1000.Add(time.Minute), out: 3000, in: 1000, sport: uint16(1000 + i)})
	}
	st = h.d.Stats()
	if st["hosts_tracked"] != 10 || st["hosts_evicted"] != 20 || st["flows_followed"] != 0 { // 30 hosts, 10 kept
		t.Errorf("after the final records: %v, want 10 hosts (20 evicted) and no flow followed", st)
	}
	if got, want := st["bytes_outbound"], float64(5*1000+5*2000+25*3000); got != want {
		t.Errorf("bytes_outbound %v, want %v (each flow once)", got, want)
	}
	// A long flow whose final record never comes is forgotten.
	h.feed(rec{src: client, dst: cloud, start: wed1000, out: 1, in: 1, interim: true, sport: 7})
	h.d.Tick(wed1000.Add(10 * time.Minute))
	if st := h.d.Stats(); st["flows_followed"] != 0 || st["flows_expired"] != 1 {
		t.Errorf("after FlowIdle: %v", st)
	}
	h.d.Tick(wed1000.Add(3 * time.Hour))
	if st := h.d.Stats(); st["hosts_tracked"] != 0 || st["hosts_expired"] != 10 || st["hosts_evicted"] != 21 {
		t.Errorf("after HostIdle: %v", st)
	}
}

func TestNoHomeNetworks(t *testing.T) {
	var n int
	d := New(Config{}, detect.Env{Inv: enrich.New(nil, nil), Emit: func(*detect.Alert) { n++ }})
	h := &harness{inv: enrich.New(nil, nil)}
	c := h.conn(upload(client, wed0230, 100*mib))
	c.Direction = ""
	d.OnConn(c)
	if n != 0 {
		t.Errorf("alerted without home networks")
	}
	// Direction unset by the caller: derived from the inventory.
	h2 := newHarness(t, Config{})
	c = h2.conn(upload(client, wed0230, 100*mib))
	c.Direction = ""
	h2.d.OnConn(c)
	if len(h2.alerts) != 1 {
		t.Errorf("Direction derived from the inventory: %d alerts, want 1", len(h2.alerts))
	}
}

func TestBusinessHours(t *testing.T) {
	for _, tc := range []struct {
		days, hours, zone string
		at                time.Time
		want              bool
	}{
		{"", "", "", wed1000, true},
		{"", "", "", wed0230, false},
		{"", "", "", sat1100, false},
		{"", "", "", time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC), false},
		{"", "", "", time.Date(2026, 11, 25, 17, 59, 0, 0, time.UTC), true},
		{"Sun-Thu", "09:00-17:00", "Asia/Dubai", time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC), true}, // Sunday 10:00 in Dubai
		{"Sun-Thu", "09:00-17:00", "Asia/Dubai", time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC), false},
		{"Mon-Fri", "22:00-06:00", "", time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC), true},  // Thu 03:00, shift from Wed
		{"Mon-Fri", "22:00-06:00", "", time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC), false}, // Mon 03:00, shift from Sun
		{"Mon,Wed", "08:00-12:00", "Europe/Berlin", time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), true},
		{"Mon,Wed", "08:00-12:00", "Europe/Berlin", time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), false},
	} {
		b := mustHours(t, tc.days, tc.hours, tc.zone)
		if got := b.Contains(tc.at); got != tc.want {
			t.Errorf("%q %q %q at %v: %v, want %v", tc.days, tc.hours, tc.zone, tc.at, got, tc.want)
		}
	}
	if s := (BusinessHours{}).String(); s != "Mon-Fri 08:00-18:00 UTC" {
		t.Errorf("default business hours %q", s)
	}
	for _, bad := range [][3]string{
		{"", "8-18", ""}, {"", "08:00-25:00", ""}, {"", "08:00", ""}, {"", "08:00-08:00", ""},
		{"Mon-Fry", "", ""}, {"Funday", "", ""}, {"", "", "Mars/Olympus"},
	} {
		if _, err := ParseBusinessHours(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("ParseBusinessHours%q: no error", bad)
		} else {
			t.Logf("ParseBusinessHours%q: %v", bad, err)
		}
	}
}

// BenchmarkOnConn: 1000 home hosts talking to the internet; one record in
// ten is an interim record of one of 200 long flows, the rest are final
// records of short connections; event time moves forward.
func BenchmarkOnConn(b *testing.B) {
	h := newHarness(b, Config{})
	rng := rand.New(rand.NewSource(1))
	const hosts = 1000
	srcs := make([]netip.Addr, hosts)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	seq := make([]uint16, 1<<16)
	for i := range seq {
		seq[i] = uint16(rng.Intn(hosts))
	}
	c := h.conn(upload(client, wed1000, 1000))
	at := wed1000
	var long [200]uint64 // cumulative bytes of the long flows
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at = at.Add(time.Millisecond)
		c.Start, c.End = at.Add(-time.Second), at
		if i%10 == 0 {
			j := (i / 10) % len(long)
			long[j] += 100e3
			c.Key.Src, c.Key.Dst, c.Key.SrcPort = srcs[j], netip.AddrFrom4([4]byte{203, 0, 113, byte(j)}), 443
			c.Final = false
			c.OrigBytes, c.RespBytes = long[j], long[j]*3
		} else {
			j := seq[i%len(seq)]
			c.Key.Src = srcs[j]
			c.Key.Dst = netip.AddrFrom4([4]byte{203, 0, byte(j), byte(i % 7)})
			c.Key.SrcPort = uint16(1024 + i%50000)
			c.Final = true
			c.OrigBytes, c.RespBytes = uint64(800+i%5000), uint64(3000+i%20000)
		}
		h.d.OnConn(c)
	}
}

// TestLateRecord: a record from before the current window (records are
// only roughly in order) still counts, without overweighting the
// previous window.
func TestLateRecord(t *testing.T) {
	h := newHarness(t, Config{})
	at := time.Date(2026, 11, 25, 2, 59, 50, 0, time.UTC)
	h.feed(rec{src: client, dst: cloud, start: at, end: at.Add(20 * time.Second), out: 10 * mib, in: 30e3}) // ends 03:00:10
	h.feed(rec{src: client, dst: cloud, start: at.Add(-time.Minute), end: at.Add(5 * time.Second), out: 10 * mib, in: 30e3})
	if len(h.alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(h.alerts))
	}
	if got := h.alerts[0].Evidence["bytes_out_window"].(float64); got != 20*mib {
		t.Errorf("bytes_out_window %.0f, want %d", got, 20*mib)
	}
}
