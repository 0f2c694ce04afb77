package daemon

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/engine"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/eve"
)

// setupDetect builds the detection engine and subscribes it to the
// dataplane's events (ahead of any other subscriber).
func (d *Daemon) setupDetect() error {
	c := d.cfg.Detect
	var assets []enrich.Asset
	if c.Assets != "" {
		var err error
		if assets, err = enrich.LoadAssets(c.Assets); err != nil {
			return err
		}
	}
	sinks := engine.Sinks{Alert: d.onAlert}
	if d.enf != nil {
		sinks.DNS = d.enf.Monitor().OnDNS // the health signals' DNS failures, parsed once
	}
	if c.EVE != "" {
		f, err := os.OpenFile(c.EVE, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("open EVE output: %w", err)
		}
		d.eveFile, d.eve = f, eve.NewWriter(f, eve.AllTypes, d.cfg.Bridge.Name)
		sinks.EVE = d.eve
	}
	ecfg := engine.Config{HomeNets: c.HomeNets, Assets: assets, IndicatorsFile: c.Indicators,
		Live: true, Disabled: c.Disabled, SnippetLen: int(d.cfg.Dataplane.SnippetBytes)}
	for _, r := range c.Suppress {
		ecfg.Suppress = append(ecfg.Suppress, engine.SuppressRule(r))
	}
	for _, w := range c.Maintenance {
		ecfg.Maintenance = append(ecfg.Maintenance, engine.MaintenanceWindow(w))
	}
	eng, err := engine.New(ecfg, sinks, d.opts.Logf)
	if err != nil {
		if d.eveFile != nil {
			d.eveFile.Close()
		}
		return err
	}
	d.eng = eng
	d.opts.Handlers = append([]event.Handler{eng}, d.opts.Handlers...)
	return nil
}

// onAlert runs on the reader goroutine for every alert the engine emits.
func (d *Daemon) onAlert(a *detect.Alert) {
	d.alerts.add(a)
	d.onAlertEnforce(a)
	if d.cfg.Log.Alerts {
		victims := make([]string, len(a.Victims))
		for i, v := range a.Victims {
			victims[i] = v.String()
		}
		d.logf("alert risk=%.0f %s/%s attacker=%s victims=%s ttd=%v: %s", a.Risk, a.Type, a.Subtype, a.Attacker,
			strings.Join(victims, ","), a.TimeToDetect.Round(time.Microsecond), a.Signature)
	}
}

// housekeeping flushes EVE output every second and reloads the indicator
// lists on SIGHUP.
func (d *Daemon) housekeeping(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if d.eve != nil {
				if err := d.eve.Flush(); err != nil {
					d.logf("EVE output: %v", err)
				}
			}
		case <-hup:
			if err := d.eng.ReloadIndicators(); err != nil {
				d.logf("reload indicators: %v", err)
			} else {
				d.logf("indicators reloaded from %s", d.cfg.Detect.Indicators)
			}
		}
	}
}

// closeDetect finishes the engine after the reader stopped.
func (d *Daemon) closeDetect() {
	if d.eng != nil {
		d.eng.Flush()
	}
	if d.eveFile != nil {
		if err := d.eve.Flush(); err != nil {
			d.logf("EVE output: %v", err)
		}
		d.eveFile.Close()
	}
}

// recentAlerts keeps the last alerts for the management API.
type recentAlerts struct {
	mu  sync.Mutex
	buf []*detect.Alert
	n   int
}

func newRecentAlerts(n int) *recentAlerts {
	return &recentAlerts{buf: make([]*detect.Alert, 0, n), n: n}
}

func (r *recentAlerts) add(a *detect.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) == r.n {
		copy(r.buf, r.buf[1:])
		r.buf = r.buf[:r.n-1]
	}
	r.buf = append(r.buf, a)
}

func (r *recentAlerts) last(n int) []*detect.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(n, len(r.buf))
	return append([]*detect.Alert(nil), r.buf[len(r.buf)-n:]...)
}

var (
	descAlerts     = prometheus.NewDesc("wardline_detect_alerts_total", "Alerts emitted, by type.", []string{"type"}, nil)
	descParseErr   = prometheus.NewDesc("wardline_detect_parse_errors_total", "Payload snippets that did not parse, by protocol.", []string{"proto"}, nil)
	descSuppressed = prometheus.NewDesc("wardline_detect_suppressed_total", "Alerts suppressed, by rule or maintenance window.", []string{"by"}, nil)
	descDeduped    = prometheus.NewDesc("wardline_detect_deduplicated_total", "Alerts merged into an earlier one with the same fingerprint.", nil, nil)
	descTTD        = prometheus.NewDesc("wardline_detect_time_to_detect_seconds", "Time from the decisive packet to the alert.", []string{"quantile"}, nil)
	descDetState   = prometheus.NewDesc("wardline_detect_detector_stat", "Detectors' own counters and state sizes.", []string{"detector", "stat"}, nil)
	descEvents     = prometheus.NewDesc("wardline_detect_events_total", "Events the engine processed.", []string{"type"}, nil)
)

func (c *collector) collectDetect(ch chan<- prometheus.Metric) {
	d := c.d
	if d.eng == nil {
		return
	}
	st := d.eng.Stats()
	for k, v := range st.Alerts {
		ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.CounterValue, float64(v), k)
	}
	for k, v := range st.ParseErrors {
		ch <- prometheus.MustNewConstMetric(descParseErr, prometheus.CounterValue, float64(v), k)
	}
	for k, v := range st.Suppressed {
		ch <- prometheus.MustNewConstMetric(descSuppressed, prometheus.CounterValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(descDeduped, prometheus.CounterValue, float64(st.Deduplicated))
	ch <- prometheus.MustNewConstMetric(descTTD, prometheus.GaugeValue, st.TimeToDetectP50.Seconds(), "0.5")
	ch <- prometheus.MustNewConstMetric(descTTD, prometheus.GaugeValue, st.TimeToDetectP95.Seconds(), "0.95")
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(st.Flows), "flow")
	ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(st.Snippets), "snippet")
	for det, m := range st.Detectors {
		for k, v := range m {
			ch <- prometheus.MustNewConstMetric(descDetState, prometheus.GaugeValue, v, det, k)
		}
	}
}
