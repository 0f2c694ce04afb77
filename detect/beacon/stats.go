package beacon

import (
	"math"
)

// summary is the robust description of one series (inter-arrival times or
// sizes): quartiles, the median absolute deviation and what follows.
type summary struct {
	q1, median, q3 float64
	mad            float64 // median absolute deviation from the median
	bowley         float64 // Bowley (quartile) skewness, -1..1; 0 when Q3 == Q1
	dispersion     float64 // mad / median; 0 when both are 0, +Inf when only the median is 0
	within         float64 // share of values within ±tol of the median
}

// summarize describes xs. It reorders xs and uses scratch (at least
// len(xs) long) for the absolute deviations; it allocates nothing and
// runs in linear time (selection, not sorting: this runs per connection).
func summarize(xs, scratch []float64, tol float64) summary {
	var s summary
	if len(xs) == 0 {
		return s
	}
	s.q1, s.median, s.q3 = quartiles(xs)
	dev := scratch[:len(xs)]
	in := 0
	for i, x := range xs {
		d := math.Abs(x - s.median)
		dev[i] = d
		if d <= tol*s.median {
			in++
		}
	}
	s.within = float64(in) / float64(len(xs))
	s.mad = quantile(dev, 0.5)
	// A spread below a millionth of the median is measurement noise
	// (timestamps, rounding): treat it as none.
	if iqr := s.q3 - s.q1; iqr > 1e-6*math.Abs(s.median) {
		s.bowley = (s.q1 + s.q3 - 2*s.median) / iqr
	}
	switch {
	case s.median > 0:
		s.dispersion = s.mad / s.median
	case s.mad > 0:
		s.dispersion = math.Inf(1)
	}
	return s
}

// Quantiles interpolate linearly between order statistics (R's type 7,
// numpy's default): for p, h = p(n-1) and the result lies between the
// floor(h)-th and the next smallest value.

// quantile returns the p-quantile of xs, reordering xs.
func quantile(xs []float64, p float64) float64 {
	n := len(xs)
	if n == 1 {
		return xs[0]
	}
	h := p * float64(n-1)
	i := int(h)
	selectK(xs, i)
	if i+1 >= n || h == float64(i) {
		return xs[i]
	}
	return xs[i] + (h-float64(i))*(minOf(xs[i+1:])-xs[i])
}

// quartiles returns Q1, the median and Q3 of xs, reordering xs: one
// selection around the median, then one in each half.
func quartiles(xs []float64) (q1, q2, q3 float64) {
	n := len(xs)
	if n < 4 {
		for i := 1; i < n; i++ { // insertion sort; tiny
			for j := i; j > 0 && xs[j] < xs[j-1]; j-- {
				xs[j], xs[j-1] = xs[j-1], xs[j]
			}
		}
		at := func(p float64) float64 {
			h := p * float64(n-1)
			i := int(h)
			if i+1 >= n {
				return xs[n-1]
			}
			return xs[i] + (h-float64(i))*(xs[i+1]-xs[i])
		}
		return at(0.25), at(0.5), at(0.75)
	}
	m := (n - 1) / 2
	selectK(xs, m)
	lo, hi := xs[:m], xs[m+1:] // every value in lo <= xs[m] <= every value in hi
	rank := func(r int) float64 {
		switch {
		case r == m:
			return xs[m]
		case r < m:
			selectK(lo, r)
			return lo[r]
		default:
			selectK(hi, r-m-1)
			return hi[r-m-1]
		}
	}
	q := func(p float64) float64 {
		h := p * float64(n-1)
		i := int(h)
		f := h - float64(i)
		v := rank(i)
		if f == 0 || i+1 >= n {
			return v
		}
		return v + f*(rank(i+1)-v)
	}
	q2 = q(0.5)
	return q(0.25), q2, q(0.75)
}

// selectK reorders xs so that xs[k] is the value of rank k, with no
// larger value before it and no smaller one after it (Hoare's quickselect
// with a median-of-three pivot; insertion sort for short ranges).
func selectK(xs []float64, k int) {
	lo, hi := 0, len(xs)-1
	for hi-lo >= 12 {
		mid := lo + (hi-lo)/2
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return // between j and i: equal to the pivot
		}
	}
	for i := lo + 1; i <= hi; i++ {
		for j := i; j > lo && xs[j] < xs[j-1]; j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

// clamp01 limits x to 0..1.
func clamp01(x float64) float64 {
	if x != x { // NaN
		return 0
	}
	return min(1, max(0, x))
}
