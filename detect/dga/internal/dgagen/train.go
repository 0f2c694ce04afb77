package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"go/format"
	"hash/fnv"
	"io"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/wardline/wardline/detect/dga"
)

// sample is one labelled name.
type sample struct {
	domain, family string
	dga            bool
	f              dga.Features
	judged         bool // the model judges its label (long enough, not punycode)
}

func runTrain(args []string) error {
	fs := flag.NewFlagSet("train", flag.ExitOnError)
	data := fs.String("data", "", "labelled CSV: label(dga|legit),family,domain")
	benign := fs.String("benign", "testdata/benign.txt", "benign registered domains, one a line (# comments)")
	out := fs.String("out", "model_gen.go", "Go file to write")
	holdout := fs.Int("holdout", 3, "tenths of the labelled CSV held back for validation (split by a hash of the name)")
	targetP := fs.Float64("precision", 0.95, "threshold: the lowest whose training precision reaches this")
	minLen := fs.Int("minlen", 6, "labels shorter than this are never judged")
	lambda := fs.Float64("l2", 1e-3, "L2 regularisation")
	errs := fs.String("errors", "", "write the validation errors to this file")
	drop := fs.String("drop", "", "comma-separated features to leave out of the model")
	fs.Parse(args)

	m := dga.Model{MinLength: *minLen}
	train, valid, err := readLabelled(*data, *holdout, &m)
	if err != nil {
		return err
	}
	ben, err := readBenign(*benign, &m)
	if err != nil {
		return err
	}
	train = append(train, ben...)
	fmt.Fprintf(os.Stderr, "train %d names (%d from %s), validation %d\n", len(train), len(ben), *benign, len(valid))

	var dropped [dga.NumFeatures]bool
	for _, name := range strings.Split(*drop, ",") {
		for i := range dga.NumFeatures {
			if name != "" && dga.Feature(i).String() == name {
				dropped[i] = true
			}
		}
	}
	fit(&m, train, *lambda, dropped)
	m.Threshold = pickThreshold(&m, train, *targetP)
	fmt.Fprintf(os.Stderr, "threshold %.3f (training precision >= %.2f)\n", m.Threshold, *targetP)
	report(os.Stderr, "train", &m, train)
	report(os.Stderr, "validation", &m, valid)
	families(os.Stderr, &m, valid)
	if *errs != "" {
		ef, _ := os.Create(*errs)
		dumpErrors(ef, &m, valid)
		ef.Close()
	}

	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	if err := writeModel(f, &m, *data, *benign, *holdout, len(train), *targetP); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return f.Close()
}

func newSample(domain, family string, isDGA bool, m *dga.Model) (sample, bool) {
	_, label, ok := dga.RegisteredDomain(strings.ToLower(domain))
	if !ok {
		return sample{}, false
	}
	s := sample{domain: domain, family: family, dga: isDGA, judged: m.Judgeable(label)}
	s.f = dga.Extract(label)
	return s, true
}

// eachLabelled calls fn for every record of a labelled CSV
// (label,family,domain), checking the label.
func eachLabelled(path string, fn func(label, family, domain string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read labelled names: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 3
	for line := 1; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if rec[0] != "dga" && rec[0] != "legit" {
			return fmt.Errorf("%s:%d: label %q is neither dga nor legit", path, line, rec[0])
		}
		if err := fn(rec[0], rec[1], rec[2]); err != nil {
			return err
		}
	}
}

// heldOut reports whether a name belongs to the validation part: an
// FNV-32a hash of the name modulo 10 is below holdout.
func heldOut(domain string, holdout int) bool {
	h := fnv.New32a()
	h.Write([]byte(domain))
	return int(h.Sum32()%10) < holdout
}

func readLabelled(path string, holdout int, m *dga.Model) (train, valid []sample, err error) {
	err = eachLabelled(path, func(label, family, domain string) error {
		s, ok := newSample(domain, family, label == "dga", m)
		if !ok {
			return nil
		}
		if heldOut(domain, holdout) {
			valid = append(valid, s)
		} else {
			train = append(train, s)
		}
		return nil
	})
	return train, valid, err
}

func readBenign(path string, m *dga.Model) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read benign names: %w", err)
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		d := strings.TrimSpace(sc.Text())
		if d == "" || strings.HasPrefix(d, "#") {
			continue
		}
		if s, ok := newSample(d, "benign-list", false, m); ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// fit sets Mean, Std, Bias and Weight by full-batch gradient descent on the
// L2-regularised logistic loss over the judged samples.
func fit(m *dga.Model, train []sample, lambda float64, dropped [dga.NumFeatures]bool) {
	var rows []sample
	for _, s := range train {
		if s.judged {
			rows = append(rows, s)
		}
	}
	n := float64(len(rows))
	for i := range dga.NumFeatures {
		sum, sq := 0.0, 0.0
		for _, s := range rows {
			sum += s.f[i]
			sq += s.f[i] * s.f[i]
		}
		m.Mean[i] = sum / n
		m.Std[i] = math.Sqrt(max(0, sq/n-m.Mean[i]*m.Mean[i]))
		if dropped[i] {
			m.Std[i] = 0
		}
	}
	z := make([]dga.Features, len(rows))
	for k, s := range rows {
		for i := range dga.NumFeatures {
			if m.Std[i] > 0 {
				z[k][i] = (s.f[i] - m.Mean[i]) / m.Std[i]
			}
		}
	}
	// Adam on the mean loss.
	var w, mw, vw dga.Features
	b, mb, vb := 0.0, 0.0, 0.0
	const lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
	for it := 1; it <= 4000; it++ {
		var g dga.Features
		gb := 0.0
		for k, s := range rows {
			t := b
			for i := range w {
				t += w[i] * z[k][i]
			}
			p := 1 / (1 + math.Exp(-t))
			y := 0.0
			if s.dga {
				y = 1
			}
			d := p - y
			gb += d
			for i := range w {
				g[i] += d * z[k][i]
			}
		}
		gb /= n
		c1, c2 := 1-math.Pow(b1, float64(it)), 1-math.Pow(b2, float64(it))
		for i := range w {
			g[i] = g[i]/n + lambda*w[i]
			mw[i] = b1*mw[i] + (1-b1)*g[i]
			vw[i] = b2*vw[i] + (1-b2)*g[i]*g[i]
			w[i] -= lr * (mw[i] / c1) / (math.Sqrt(vw[i]/c2) + eps)
		}
		mb = b1*mb + (1-b1)*gb
		vb = b2*vb + (1-b2)*gb*gb
		b -= lr * (mb / c1) / (math.Sqrt(vb/c2) + eps)
	}
	m.Weight, m.Bias = w, b
}

func prob(m *dga.Model, s *sample) float64 {
	if !s.judged {
		return 0
	}
	return 1 / (1 + math.Exp(-m.Logit(&s.f)))
}

// pickThreshold returns the lowest threshold (in steps of 0.01) at which the
// precision on the samples reaches target.
func pickThreshold(m *dga.Model, set []sample, target float64) float64 {
	ps := make([]float64, len(set))
	for i := range set {
		ps[i] = prob(m, &set[i])
	}
	for th := 0.30; th < 0.995; th += 0.01 {
		tp, fp := 0, 0
		for i, s := range set {
			if ps[i] >= th {
				if s.dga {
					tp++
				} else {
					fp++
				}
			}
		}
		if tp+fp > 0 && float64(tp)/float64(tp+fp) >= target {
			return math.Round(th*100) / 100
		}
	}
	return 0.99
}

func report(w io.Writer, name string, m *dga.Model, set []sample) {
	tp, fp, tn, fn := 0, 0, 0, 0
	for i := range set {
		hit := prob(m, &set[i]) >= m.Threshold
		switch {
		case hit && set[i].dga:
			tp++
		case hit:
			fp++
		case set[i].dga:
			fn++
		default:
			tn++
		}
	}
	p := float64(tp) / float64(max(1, tp+fp))
	r := float64(tp) / float64(max(1, tp+fn))
	acc := float64(tp+tn) / float64(max(1, len(set)))
	fmt.Fprintf(w, "%-10s n=%d  P %.3f  R %.3f  accuracy %.3f  (tp %d fp %d tn %d fn %d)\n", name, len(set), p, r, acc, tp, fp, tn, fn)
}

func families(w io.Writer, m *dga.Model, set []sample) {
	hit, all := map[string]int{}, map[string]int{}
	for i := range set {
		all[set[i].family]++
		if prob(m, &set[i]) >= m.Threshold {
			hit[set[i].family]++
		}
	}
	names := make([]string, 0, len(all))
	for f := range all {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		fmt.Fprintf(w, "  %-13s %4d  flagged %.2f\n", f, all[f], float64(hit[f])/float64(all[f]))
	}
}

func writeModel(w io.Writer, m *dga.Model, data, benign string, holdout, ntrain int, target float64) error {
	var buf bytes.Buffer
	bw := &buf
	fmt.Fprintf(bw, "// Code generated by dgagen train; DO NOT EDIT.\n")
	fmt.Fprintf(bw, "// Trained on %d names: %d/10 of %s (split by an FNV-32a hash of the name)\n", ntrain, 10-holdout, baseName(data))
	fmt.Fprintf(bw, "// plus %s; threshold = lowest with training precision >= %.2f.\n\n", baseName(benign), target)
	fmt.Fprintf(bw, "package dga\n\n")
	fmt.Fprintf(bw, "var trainedModel = Model{\n")
	fmt.Fprintf(bw, "\tBias:      %.4f,\n", m.Bias)
	fmt.Fprintf(bw, "\tThreshold: %.2f,\n", m.Threshold)
	fmt.Fprintf(bw, "\tMinLength: %d,\n", m.MinLength)
	for _, v := range []struct {
		name string
		f    *dga.Features
	}{{"Mean", &m.Mean}, {"Std", &m.Std}, {"Weight", &m.Weight}} {
		fmt.Fprintf(bw, "\t%s: Features{\n", v.name)
		for i := range dga.NumFeatures {
			fmt.Fprintf(bw, "\t\t%.4f, // %s\n", v.f[i], dga.Feature(i))
		}
		fmt.Fprintf(bw, "\t},\n")
	}
	fmt.Fprintf(bw, "}\n")
	return writeFormatted(w, &buf)
}

// writeFormatted gofmts the generated source and writes it.
func writeFormatted(w io.Writer, src *bytes.Buffer) error {
	out, err := format.Source(src.Bytes())
	if err != nil {
		return fmt.Errorf("format generated code: %w", err)
	}
	_, err = w.Write(out)
	return err
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

func dumpErrors(w io.Writer, m *dga.Model, set []sample) {
	for i := range set {
		p := prob(m, &set[i])
		hit := p >= m.Threshold
		if hit != set[i].dga {
			fmt.Fprintf(w, "%s\t%.2f\t%s\t%s\n", map[bool]string{true: "FP", false: "FN"}[hit], p, set[i].family, set[i].domain)
		}
	}
}
