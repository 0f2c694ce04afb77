package beacon

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/wardline/wardline/detect"
)

// Maximum points of each sub-score; they add up to 100. Timing carries
// most of the weight because it is what tells a timer from a person:
// sizes, counts and coverage are just as regular for a person polling the
// same page, so they only add evidence to regular timing (see README.md).
const (
	ptsTSDispersion = 35 // MAD/median of the intervals
	ptsTSSchedule   = 10 // share of intervals within ±Jitter of the median
	ptsTSSkew       = 10 // Bowley skewness of the intervals
	ptsDSDispersion = 12 // MAD/median of the client bytes
	ptsDSSkew       = 8  // Bowley skewness of the client bytes
	ptsCount        = 15 // check-ins, from MinConns to FullConns
	ptsCoverage     = 10 // share of the observed time the check-ins span
)

// features is one evaluation of a pair.
type features struct {
	n        int     // check-ins in the window
	ts       summary // intervals, seconds
	ds       summary // client bytes per check-in
	span     float64 // seconds from the first to the last check-in kept
	observed float64 // seconds the detector has watched (capped at Window)
	coverage float64
	points   [7]float64
}

// evaluate computes the sub-scores of a pair (no allocation). Timing
// comes first: when the intervals are not periodic the rest is not
// computed (periodic reports false and the other points stay zero).
func (d *Detector) evaluate(p *pair) (f features, periodic bool) {
	d.st.evaluations++
	n := len(p.times)
	f.n = n
	prev := p.times[p.idx(0)]
	for i := 1; i < n; i++ {
		t := p.times[p.idx(i)]
		d.ivals[i-1] = float64(t-prev) / 1e9
		prev = t
	}
	f.ts = summarize(d.ivals[:n-1], d.dev, d.cfg.Jitter)
	f.points[0] = ptsTSDispersion * clamp01(1-f.ts.dispersion/(2*d.cfg.MaxDispersion))
	f.points[1] = ptsTSSchedule * clamp01((f.ts.within-0.5)/0.5)
	f.points[2] = ptsTSSkew * clamp01(1-math.Abs(f.ts.bowley))
	if !f.periodic(&d.cfg) {
		return f, false
	}

	for i := 0; i < n; i++ {
		d.sizes[i] = float64(p.sizes[p.idx(i)])
	}
	f.ds = summarize(d.sizes[:n], d.dev, 0)
	// Coverage looks at the last Window only (RITA: the share of the
	// day the pair was active); the statistics use every kept check-in.
	from := max(d.first, d.now-int64(d.cfg.Window))
	first := from
	for i := 0; i < n; i++ {
		if t := p.times[p.idx(i)]; t >= from {
			first = t
			break
		}
	}
	f.span = float64(max(0, p.times[p.idx(n-1)]-first)) / 1e9
	f.observed = float64(d.now-from) / 1e9
	if f.observed > 0 {
		f.coverage = clamp01(f.span / f.observed)
	}
	f.points[3] = ptsDSDispersion * clamp01(1-2*f.ds.dispersion)
	f.points[4] = ptsDSSkew * clamp01(1-math.Abs(f.ds.bowley))
	f.points[5] = ptsCount * clamp01(float64(n-d.cfg.MinConns)/float64(d.cfg.FullConns-d.cfg.MinConns))
	f.points[6] = ptsCoverage * f.coverage
	return f, true
}

func (f *features) total() float64 {
	s := 0.0
	for _, p := range f.points {
		s += p
	}
	return s
}

// periodic applies the hard rules that make a series periodic at all,
// whatever the other sub-scores say.
func (f *features) periodic(cfg *Config) bool {
	return f.ts.median >= cfg.MinInterval.Seconds() &&
		f.ts.dispersion <= cfg.MaxDispersion &&
		f.ts.within >= cfg.MinOnSchedule
}

func dur(s float64) time.Duration {
	return time.Duration(s * 1e9).Round(time.Millisecond)
}

// alert builds and emits the alert for a pair.
func (d *Detector) alert(p *pair, c *detect.Conn, f *features, risk float64) {
	d.st.alerts++
	cfg := &d.cfg
	period := dur(f.ts.median)
	reasons := []detect.Contribution{
		{Feature: "ts_dispersion", Value: round3(f.ts.dispersion), Points: f.points[0],
			Why: fmt.Sprintf("intervals vary by %.0f%% of the %v median (median absolute deviation %v; a beacon stays under %.0f%%, human use is far above)",
				100*f.ts.dispersion, period, dur(f.ts.mad), 100*cfg.MaxDispersion)},
		{Feature: "ts_on_schedule", Value: round3(f.ts.within), Points: f.points[1],
			Why: fmt.Sprintf("%.0f%% of the intervals are within ±%.0f%% of %v", 100*f.ts.within, 100*cfg.Jitter, period)},
		{Feature: "ts_skew", Value: round3(f.ts.bowley), Points: f.points[2],
			Why: fmt.Sprintf("interval quartiles %v / %v / %v are symmetric (Bowley skewness %.2f; 0 is a steady timer with even jitter)",
				dur(f.ts.q1), period, dur(f.ts.q3), f.ts.bowley)},
		{Feature: "ds_dispersion", Value: round3(f.ds.dispersion), Points: f.points[3],
			Why: fmt.Sprintf("the client sends %.0f bytes per check-in, varying by %.0f%% (median absolute deviation %.0f bytes)",
				f.ds.median, 100*f.ds.dispersion, f.ds.mad)},
		{Feature: "ds_skew", Value: round3(f.ds.bowley), Points: f.points[4],
			Why: fmt.Sprintf("client byte quartiles %.0f / %.0f / %.0f (Bowley skewness %.2f)", f.ds.q1, f.ds.median, f.ds.q3, f.ds.bowley)},
		{Feature: "conn_count", Value: float64(f.n), Points: f.points[5],
			Why: fmt.Sprintf("%d check-ins (scored from %d, full points at %d)", f.n, cfg.MinConns, cfg.FullConns)},
		{Feature: "coverage", Value: round3(f.coverage), Points: f.points[6],
			Why: fmt.Sprintf("the check-ins span %v of the last %v observed", dur(f.span), dur(f.observed))},
	}
	victims := make([]netip.Addr, p.nvict)
	copy(victims, p.victims[:p.nvict])
	a := &detect.Alert{
		Type:     detect.TypeBeaconing,
		Detector: d.Name(),
		Time:     c.End,
		Attacker: p.key.src,
		Victims:  victims,
		Flow:     detect.NewFlowRef(c.Key),
		Signature: fmt.Sprintf("%s beacons to %s every %v (±%.0f%%), %d check-ins of ~%.0f bytes",
			p.key.src, p.label(), period, 100*f.ts.dispersion, f.n, f.ds.median),
		MITRE:      detect.MITREC2AppLayer,
		Confidence: round3(min(0.99, risk/100)),
		Reasons:    reasons,
		Evidence: map[string]any{
			"destination":       p.label(),
			"dest_port":         p.port,
			"proto":             detect.ProtoName(p.proto),
			"checkins":          f.n,
			"connections":       p.conns,
			"interval_median_s": round3(f.ts.median),
			"interval_q1_s":     round3(f.ts.q1),
			"interval_q3_s":     round3(f.ts.q3),
			"interval_mad_s":    round3(f.ts.mad),
			"ts_dispersion":     round3(f.ts.dispersion),
			"ts_skew":           round3(f.ts.bowley),
			"ts_on_schedule":    round3(f.ts.within),
			"bytes_median":      f.ds.median,
			"bytes_mad":         f.ds.mad,
			"ds_dispersion":     round3(f.ds.dispersion),
			"ds_skew":           round3(f.ds.bowley),
			"first_checkin":     time.Unix(0, p.times[p.idx(0)]).UTC(),
			"span_s":            round3(f.span),
			"observed_s":        round3(f.observed),
			"coverage":          round3(f.coverage),
			"score_threshold":   cfg.Threshold,
			"max_ts_dispersion": cfg.MaxDispersion,
			"min_on_schedule":   cfg.MinOnSchedule,
			"jitter_tolerance":  cfg.Jitter,
		},
	}
	if p.key.name != "" {
		a.Evidence["server_name"] = p.key.name
	}
	a.Score()
	d.env.Emit(a)
}

// round3 rounds for display; an infinite ratio (a zero median) shows as
// 999 so that the alert still encodes as JSON.
func round3(x float64) float64 {
	switch {
	case math.IsNaN(x):
		return 0
	case math.IsInf(x, 0) || x > 999:
		return 999
	}
	return math.Round(x*1000) / 1000
}
