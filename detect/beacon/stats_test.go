package beacon

import (
	"math"
	"math/rand"
	"slices"
	"testing"
)

// sortedQuantile is the reference: type-7 quantile of a sorted copy.
func sortedQuantile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	h := p * float64(len(s)-1)
	i := int(h)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (h-float64(i))*(s[i+1]-s[i])
}

func TestSummarizeMatchesSorting(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for n := 1; n < 300; n++ {
		for _, kind := range []string{"exp", "ties", "const"} {
			xs := make([]float64, n)
			for i := range xs {
				switch kind {
				case "exp":
					xs[i] = rng.ExpFloat64()
				case "ties":
					xs[i] = float64(rng.Intn(5))
				case "const":
					xs[i] = 7
				}
			}
			ref := slices.Clone(xs)
			med := sortedQuantile(ref, 0.5)
			dev := make([]float64, n)
			for i, x := range ref {
				dev[i] = math.Abs(x - med)
			}
			want := summary{q1: sortedQuantile(ref, 0.25), median: med, q3: sortedQuantile(ref, 0.75), mad: sortedQuantile(dev, 0.5)}
			got := summarize(xs, make([]float64, n), 0.3)
			if got.q1 != want.q1 || got.median != want.median || got.q3 != want.q3 || got.mad != want.mad {
				t.Fatalf("n=%d %s: got q1/med/q3/mad %v/%v/%v/%v, want %v/%v/%v/%v", n, kind,
					got.q1, got.median, got.q3, got.mad, want.q1, want.median, want.q3, want.mad)
			}
		}
	}
}

func TestSummaryFeatures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		xs     []float64
		bowley float64
		disp   float64
		within float64
	}{
		{"steady timer", []float64{60, 60, 60, 60, 60}, 0, 0, 1},
		{"even jitter", []float64{50, 55, 60, 65, 70}, 0, 5.0 / 60, 1},
		{"long right tail", []float64{1, 1, 1, 2, 30}, 1, 0, 0.6},
		{"zero median", []float64{0, 0, 0, 5, 9}, 1, 0, 0.6},
	} {
		got := summarize(slices.Clone(tc.xs), make([]float64, len(tc.xs)), 0.3)
		if math.Abs(got.bowley-tc.bowley) > 1e-9 || math.Abs(got.dispersion-tc.disp) > 1e-9 || math.Abs(got.within-tc.within) > 1e-9 {
			t.Errorf("%s: bowley %v dispersion %v within %v, want %v %v %v", tc.name, got.bowley, got.dispersion, got.within, tc.bowley, tc.disp, tc.within)
		}
	}
}
