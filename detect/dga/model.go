package dga

import (
	"math"
	"strings"
)

// Model is a logistic model over the lexical features: the log-odds that a
// label was machine-generated are
//
//	Bias + Σ Weight[i] · (f[i] - Mean[i]) / Std[i]
//
// so each term is that feature's contribution, in log-odds, relative to an
// average label of the training data.
type Model struct {
	Bias      float64
	Mean, Std Features
	Weight    Features
	// Threshold is the probability from which a label counts as DGA-looking.
	Threshold float64
	// MinLength: shorter labels are never judged (too little evidence).
	MinLength int
}

// DefaultModel is the model trained by dgagen (model_gen.go).
func DefaultModel() *Model { m := trainedModel; return &m }

// Judgeable reports whether the model judges a label at all: long enough,
// and not an IDN A-label (punycode looks random by construction).
func (m *Model) Judgeable(label string) bool {
	return len(label) >= m.MinLength && !strings.HasPrefix(label, "xn--")
}

// Logit returns the log-odds for already extracted features.
func (m *Model) Logit(f *Features) float64 {
	z := m.Bias
	for i := range f {
		if m.Std[i] > 0 {
			z += m.Weight[i] * (f[i] - m.Mean[i]) / m.Std[i]
		}
	}
	return z
}

// Score returns the probability that label (the first label of a registered
// domain, lower case) was machine-generated; 0 for labels the model does not
// judge. It does not allocate.
func (m *Model) Score(label string) float64 {
	if !m.Judgeable(label) {
		return 0
	}
	f := Extract(label)
	return sigmoid(m.Logit(&f))
}

// Term is one feature's share of a label's log-odds.
type Term struct {
	Feature string  `json:"feature"`
	Value   float64 `json:"value"`
	LogOdds float64 `json:"log_odds"`
}

// Explain returns the label's probability and the terms of its log-odds,
// largest first in absolute value.
func (m *Model) Explain(label string) (float64, []Term) {
	if !m.Judgeable(label) {
		return 0, nil
	}
	f := Extract(label)
	terms := make([]Term, 0, NumFeatures)
	for i := range f {
		if m.Std[i] == 0 || m.Weight[i] == 0 {
			continue
		}
		terms = append(terms, Term{Feature: Feature(i).String(), Value: round2(f[i]),
			LogOdds: round2(m.Weight[i] * (f[i] - m.Mean[i]) / m.Std[i])})
	}
	for i := 1; i < len(terms); i++ { // insertion sort: at most NumFeatures terms
		for j := i; j > 0 && math.Abs(terms[j].LogOdds) > math.Abs(terms[j-1].LogOdds); j-- {
			terms[j], terms[j-1] = terms[j-1], terms[j]
		}
	}
	return sigmoid(m.Logit(&f)), terms
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

func round2(x float64) float64 { return math.Round(x*100) / 100 }
