package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardline/wardline/appliance/bench"
)

func init() {
	register(command{name: "bench", usage: "benchmarks of the fast path, the detection engine and enforcement (NFQUEUE, time-to-contain, decisions/s), with ratios and targets (needs root)", run: runBench})
}

func runBench(ctx context.Context, args []string) error {
	fs := flags("bench")
	rounds := fs.Int("rounds", 5, "alternating rounds per figure")
	dur := fs.Duration("duration", 3*time.Second, "length of each TCP measurement (whole seconds)")
	pktDur := fs.Duration("pkt-duration", 1500*time.Millisecond, "length of each packet-rate measurement")
	only := fs.String("only", strings.Join(bench.AllFigures(), ","), "comma-separated figures to run")
	out := fs.String("out", "out", "directory for the JSON results")
	quiet := fs.Bool("q", false, "do not log each measurement")
	report := fs.String("report", "", "print the report of a saved JSON result instead of measuring")
	corpus := fs.String("corpus", "", "evaluation corpus for the offline and ttd figures (default $WARDLINE_CORPUS, else ../shared/corpus)")
	wardlined := fs.String("wardlined", "", "wardlined binary for the live ttd figure (default: next to this binary)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			return err
		}
		var res bench.FastpathResult
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("parse %s: %w", *report, err)
		}
		res.Report(os.Stdout)
		return nil
	}
	figs := strings.Split(*only, ",")
	if err := bench.CheckFigures(figs); err != nil {
		return err
	}
	logf := log.Printf
	if *quiet {
		logf = func(string, ...any) {}
	}
	res, err := bench.Fastpath(ctx, bench.Options{Rounds: *rounds, Duration: *dur, PktDuration: *pktDur, Only: figs, Logf: logf,
		Corpus: *corpus, Wardlined: *wardlined})
	if err != nil {
		return err
	}
	res.Report(os.Stdout)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, "bench-fastpath-"+res.Date.Format("20060102-150405")+".json")
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	return nil
}
