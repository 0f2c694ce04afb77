package exfil

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/wardline/wardline/detect"
)

// Maximum points of each feature (see README.md). Volume alone never
// reaches the threshold: a host that uploads this much every day at this
// hour (backups, sync clients) scores volume and asymmetry only, 35 to 45.
const (
	ptsVolumeBase = 20 // the window passed MinBytes
	ptsVolumeMore = 10 // up to 8x MinBytes (log scale)
	ptsBaseline   = 30 // up to 16x the host's baseline for the hour (log scale)
	ptsAsymmetry  = 15 // up to 100:1 sent:received (log scale)
	ptsOffHours   = 20 // outside business hours, scaled by how unusual the volume is
)

// assessment is one evaluation of a host.
type assessment struct {
	out, in      float64 // the host's outbound flows in the window
	top          *dest
	topOut       float64
	topIn        float64
	ratio        float64 // sent:received, the larger of the main destination's and the host's
	baseline     float64 // expected bytes per window at this hour
	baselineDays float64
	deviation    float64 // out / baseline
	offHours     bool
	local        time.Time
	frac         float64 // how far into the current fixed window
	points       [5]float64
}

func (a *assessment) total() float64 {
	s := 0.0
	for _, p := range a.points {
		s += p
	}
	return s
}

func ratio(out, in float64) float64 {
	return out / max(in, 1)
}

func log2(x float64) float64 { return math.Log2(max(x, 1e-9)) }

// assess scores a host whose window passed MinBytes. A two-sided upload
// (ratio below MinRatio) returns early, unscored: it cannot alert, and
// busy two-sided hosts pass the floor on every record.
func (d *Detector) assess(h *host, t int64, frac float64) (a assessment, oneSided bool) {
	cfg := &d.cfg
	a = assessment{out: sliding(h.out, frac), in: sliding(h.in, frac), frac: frac}
	for i := range h.dests {
		ds := &h.dests[i]
		if o := sliding(ds.out, frac); ds.addr.IsValid() && o > a.topOut {
			a.top, a.topOut, a.topIn = ds, o, sliding(ds.in, frac)
		}
	}
	a.ratio = max(ratio(a.topOut, a.topIn), ratio(a.out, a.in))
	if a.ratio < cfg.MinRatio || a.top == nil {
		return a, false
	}
	hr := d.localHour(t)
	a.baseline, a.baselineDays = d.baseline(h, hourOfDay(hr))
	a.deviation = a.out / a.baseline
	a.local = time.Unix(0, t).In(cfg.Hours.Location)
	a.offHours = !cfg.Hours.Contains(a.local)

	unusual := clamp01(log2(a.deviation) / 2) // 0 at the baseline, 1 at 4x
	a.points[0] = ptsVolumeBase
	a.points[1] = ptsVolumeMore * clamp01(log2(a.out/float64(cfg.MinBytes))/3)
	a.points[2] = ptsBaseline * clamp01(log2(a.deviation)/4)
	a.points[3] = ptsAsymmetry * clamp01(math.Log10(max(a.ratio, 1))/2)
	if a.offHours {
		a.points[4] = ptsOffHours * unusual
	}
	return a, true
}

func clamp01(x float64) float64 {
	if x != x {
		return 0
	}
	return min(1, max(0, x))
}

// evaluate scores a host and alerts when the upload is one-sided and the
// risk reaches the threshold.
func (d *Detector) evaluate(h *host, c *detect.Conn, t int64, frac float64) {
	d.st.evaluations++
	a, oneSided := d.assess(h, t, frac)
	if !oneSided || a.total() < d.cfg.Threshold {
		return
	}
	h.alertedAt = t
	d.alert(h, c, &a)
}

// mb formats bytes for people.
func mb(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func (ds *dest) label() string {
	ap := netip.AddrPortFrom(ds.addr, ds.port).String()
	if ds.name != "" {
		return fmt.Sprintf("%s (%s)", ds.name, ap)
	}
	return ap
}

func (d *Detector) alert(h *host, c *detect.Conn, a *assessment) {
	d.st.alerts++
	cfg := &d.cfg
	win := human(cfg.Window)
	sub, when := SubtypeUpload, "in business hours"
	if a.offHours {
		sub, when = SubtypeUploadOffHours, "outside business hours"
	}
	mitre := detect.MITREExfilC2
	if a.top.web {
		mitre = detect.MITREExfilWeb
	}
	learned := fmt.Sprintf("learned over %.0f hours of this time of day", a.baselineDays)
	if a.baselineDays == 0 {
		learned = "nothing learned yet: the prior"
	}
	offWhy := fmt.Sprintf("%s local time is %s (%s)", a.local.Format("Mon 15:04 MST"), when, cfg.Hours)
	if a.offHours && a.points[4] < ptsOffHours {
		offWhy += fmt.Sprintf("; weighted by how unusual the volume is (%.1fx the baseline, full weight from 4x)", a.deviation)
	}
	reasons := []detect.Contribution{
		{Feature: "upload_volume", Value: math.Round(a.out), Points: a.points[0] + a.points[1],
			Why: fmt.Sprintf("%s sent out in the last %s (floor %s, more points up to %s)", mb(a.out), win, mb(float64(cfg.MinBytes)), mb(8*float64(cfg.MinBytes)))},
		{Feature: "baseline_deviation", Value: round2(a.deviation), Points: a.points[2],
			Why: fmt.Sprintf("%.1fx what this host usually sends in %s at this hour (%s, %s)", a.deviation, win, mb(a.baseline), learned)},
		{Feature: "asymmetry", Value: round2(a.ratio), Points: a.points[3],
			Why: fmt.Sprintf("%.0f bytes sent for every byte received (one-sided from %.0f:1, full points at 100:1)", a.ratio, cfg.MinRatio)},
		{Feature: "off_hours", Value: b2f(a.offHours), Points: a.points[4], Why: offWhy},
	}
	var victims []netip.Addr
	dests := make([]map[string]any, 0, len(h.dests))
	order := make([]int, 0, len(h.dests))
	for i := range h.dests {
		if h.dests[i].addr.IsValid() {
			order = append(order, i)
		}
	}
	frac := a.frac
	sort.SliceStable(order, func(x, y int) bool {
		return sliding(h.dests[order[x]].out, frac) > sliding(h.dests[order[y]].out, frac)
	})
	for _, i := range order {
		ds := &h.dests[i]
		o, in := sliding(ds.out, frac), sliding(ds.in, frac)
		if o < a.out/10 && ds != a.top {
			continue
		}
		victims = append(victims, ds.addr)
		dests = append(dests, map[string]any{"dest": ds.label(), "bytes_out": math.Round(o), "bytes_in": math.Round(in)})
	}
	al := &detect.Alert{
		Type:     detect.TypeExfiltration,
		Subtype:  sub,
		Detector: d.Name(),
		Time:     c.End,
		Attacker: h.addr,
		Victims:  victims,
		Flow:     detect.NewFlowRef(c.Key),
		Signature: fmt.Sprintf("%s uploaded %s in the last %s, %s to %s (%.0f:1 out:in), %.1fx its baseline, %s",
			h.addr, mb(a.out), win, mb(a.topOut), a.top.label(), ratio(a.topOut, a.topIn), a.deviation, when),
		MITRE:      mitre,
		Confidence: round2(min(0.95, a.total()/100)),
		Reasons:    reasons,
		Evidence: map[string]any{
			"bytes_out_window":          math.Round(a.out),
			"bytes_in_window":           math.Round(a.in),
			"window":                    win,
			"top_destination":           a.top.label(),
			"top_bytes_out":             math.Round(a.topOut),
			"top_bytes_in":              math.Round(a.topIn),
			"destinations":              dests,
			"out_in_ratio":              round2(a.ratio),
			"baseline_bytes_per_window": math.Round(a.baseline),
			"baseline_hours_observed":   a.baselineDays,
			"baseline_deviation":        round2(a.deviation),
			"local_time":                a.local.Format(time.RFC3339),
			"off_hours":                 a.offHours,
			"business_hours":            cfg.Hours.String(),
		},
	}
	if a.top.name != "" {
		al.Evidence["server_name"] = a.top.name
	}
	al.Score()
	d.env.Emit(al)
}

// human shortens a duration for people: 1h, 15m, 90s.
func human(d time.Duration) string {
	s := d.String()
	for _, z := range []string{"0s", "0m"} {
		if len(s) > len(z) && strings.HasSuffix(s, z) && (d%time.Minute == 0) {
			s = strings.TrimSuffix(s, z)
		}
	}
	return s
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// round2 rounds for display (and keeps the alert encodable as JSON).
func round2(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case math.IsInf(x, 0) || x > 1e9:
		return 1e9
	}
	return math.Round(x*100) / 100
}
