package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/engine"
	"github.com/wardline/wardline/detect/enrich"
	"github.com/wardline/wardline/detect/eval"
	"github.com/wardline/wardline/detect/eve"
	"github.com/wardline/wardline/detect/pcap"
)

func init() {
	register(command{name: "analyze", usage: "run the detection engine over pcap/pcapng files", run: runAnalyze})
	register(command{name: "eval", usage: "measure detection against the labelled corpus (make eval)", run: runEval})
}

// prefixList is a flag of comma-separated prefixes.
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	*p = nil
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		x, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q is not a prefix (like 10.0.0.0/8)", f)
		}
		*p = append(*p, x.Masked())
	}
	return nil
}

// defaultHome is what analyze assumes when not told: the private ranges.
var defaultHome = prefixList{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
}

func runAnalyze(ctx context.Context, args []string) error {
	fs := flags("analyze")
	home := append(prefixList(nil), defaultHome...)
	fs.Var(&home, "home", "home networks, comma-separated")
	evePath := fs.String("eve", "", "write EVE JSON (alert, flow, dns, tls, http) to this file")
	asJSON := fs.Bool("json", false, "machine-readable output on stdout (alerts and statistics as JSON)")
	assetsPath := fs.String("assets", "", "asset inventory (CSV or JSON)")
	indicators := fs.String("indicators", "", "IOC lists (JSON: ips, cidrs, domains, ja3, ja4)")
	noProgress := fs.Bool("no-progress", false, "no progress bar (it is shown only on a terminal anyway)")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("usage: wardline analyze [flags] FILE... (pcap or pcapng)")
	}
	var assets []enrich.Asset
	if *assetsPath != "" {
		var err error
		if assets, err = enrich.LoadAssets(*assetsPath); err != nil {
			return err
		}
	}
	var alerts []*detect.Alert
	sinks := engine.Sinks{Alert: func(a *detect.Alert) { alerts = append(alerts, a) }}
	var ew *eve.Writer
	if *evePath != "" {
		f, err := os.Create(*evePath)
		if err != nil {
			return fmt.Errorf("create EVE file: %w", err)
		}
		defer f.Close()
		ew = eve.NewWriter(f, eve.AllTypes, "")
		sinks.EVE = ew
	}
	eng, err := engine.New(engine.Config{HomeNets: home, Assets: assets, IndicatorsFile: *indicators}, sinks, nil)
	if err != nil {
		return err
	}
	var progress func(pcap.Progress)
	bar := !*noProgress && !*asJSON && isTerminal(os.Stderr)
	start := time.Now()
	if bar {
		progress = func(p pcap.Progress) { drawProgress(os.Stderr, p, start) }
	}
	st, readErr := pcap.ReadFiles(ctx, files, eng, pcap.Options{}, progress)
	eng.Flush()
	elapsed := time.Since(start)
	if bar {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	es := eng.Stats()
	if ew != nil {
		if err := ew.Flush(); err != nil {
			return err
		}
	}
	if *asJSON {
		out := struct {
			Files   []string        `json:"files"`
			Error   string          `json:"error,omitempty"`
			Packets uint64          `json:"packets"`
			Bytes   uint64          `json:"bytes"`
			Seconds float64         `json:"seconds"`
			Alerts  []*detect.Alert `json:"alerts"`
			Engine  engine.Stats    `json:"engine"`
			Reader  pcap.Stats      `json:"reader"`
		}{Files: files, Packets: st.Packets, Bytes: st.Bytes, Seconds: elapsed.Seconds(), Alerts: alerts, Engine: es, Reader: st}
		if readErr != nil {
			out.Error = readErr.Error()
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printSummary(os.Stdout, files, st, es, alerts, elapsed)
	}
	if readErr != nil {
		return fmt.Errorf("%w (the results above cover every packet before it)", readErr)
	}
	return nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func drawProgress(w io.Writer, p pcap.Progress, start time.Time) {
	el := time.Since(start).Seconds()
	frac := 0.0
	if p.TotalBytes > 0 {
		frac = float64(p.BytesRead) / float64(p.TotalBytes)
	}
	const width = 30
	n := int(frac * width)
	eta := "?"
	if frac > 0.01 {
		eta = (time.Duration(el/frac*(1-frac)) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(w, "\r[%s%s] %3.0f%% %s/%s %.0fk pkt/s ETA %s\033[K", strings.Repeat("=", n), strings.Repeat(" ", width-n),
		100*frac, human(p.BytesRead), human(p.TotalBytes), float64(p.Packets)/max(el, 0.001)/1e3, eta)
}

func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fGB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fkB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}

func printSummary(w io.Writer, files []string, st pcap.Stats, es engine.Stats, alerts []*detect.Alert, el time.Duration) {
	fmt.Fprintf(w, "%d file(s), %d packets, %s in %v (%.0fk packets/s, %.2f Gbit/s); %d flow records, %d snippets\n",
		len(files), st.Packets, human(st.Bytes), el.Round(time.Millisecond), float64(st.Packets)/el.Seconds()/1e3,
		float64(st.Bytes)*8/el.Seconds()/1e9, es.Flows, es.Snippets)
	if n := sumMap(es.ParseErrors); n > 0 {
		fmt.Fprintf(w, "payloads that did not parse: %v\n", es.ParseErrors)
	}
	if len(alerts) == 0 {
		fmt.Fprintln(w, "no alerts")
		return
	}
	sort.SliceStable(alerts, func(i, j int) bool { return alerts[i].Risk > alerts[j].Risk })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nRISK\tTYPE\tATTACKER\tMITRE\tSIGNATURE")
	for _, a := range alerts {
		att := a.Attacker.String()
		if a.AttackerAsset != "" {
			att += " (" + a.AttackerAsset + ")"
		}
		typ := a.Type
		if a.Subtype != "" {
			typ += "/" + a.Subtype
		}
		fmt.Fprintf(tw, "%.0f\t%s\t%s\t%s\t%s\n", a.Risk, typ, att, a.MITRE.TechniqueID, a.Signature)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d alert(s) in %d incident(s); time to detect P50 %v, P95 %v\n", len(alerts), countIncidents(alerts),
		es.TimeToDetectP50.Round(time.Microsecond), es.TimeToDetectP95.Round(time.Microsecond))
	for _, a := range alerts[:min(len(alerts), 3)] {
		fmt.Fprintf(w, "  why %s by %s: %s\n", a.Type, a.Attacker, a.Explain())
	}
}

func sumMap(m map[string]uint64) uint64 {
	n := uint64(0)
	for _, v := range m {
		n += v
	}
	return n
}

func countIncidents(alerts []*detect.Alert) int {
	m := map[string]bool{}
	for _, a := range alerts {
		m[a.Incident] = true
	}
	return len(m)
}

func runEval(ctx context.Context, args []string) error {
	fs := flags("eval")
	corpus := fs.String("corpus", "../shared/corpus/generated", "directory of the labelled corpus (labels.json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	scs, err := eval.LoadScenarios(*corpus)
	if err != nil {
		return err
	}
	var results []eval.Result
	for _, sc := range scs {
		r, err := eval.Run(ctx, *corpus, sc, nil)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	eval.Report(os.Stdout, results)
	if err := eval.Check(results); err != nil {
		return fmt.Errorf("below target: %w", err)
	}
	fmt.Println("\nall attack scenarios detected with the right type and attacker; no alert on benign traffic")
	return nil
}
