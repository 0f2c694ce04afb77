package dga

import (
	"math"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Feature indexes the lexical features of a label (see README.md).
type Feature int

// The features measured. The trained model weighs seven of them (see the
// weights in model_gen.go: length, vowel_ratio, consonant_run, rare_bigrams
// and unique_ratio have weight 0, README.md says why). Surprisal features
// are in bits per letter under an English letter n-gram model
// (ngram_gen.go): high means the letters do not follow each other the way
// they do in English words.
const (
	FLength       Feature = iota // characters in the label
	FEntropy                     // Shannon entropy of the characters, bits
	FVowelRatio                  // vowels (aeiouy) among letters
	FDigitRatio                  // digits among characters
	FConsonantRun                // longest run of consonants
	FBigram                      // mean bigram surprisal, bits per letter
	FTrigram                     // mean trigram surprisal, bits per letter
	FRareBigrams                 // share of letter pairs rarer than 1/256 in English
	FSwitches                    // letter<->digit alternations
	FHyphens                     // hyphens
	FUniqueRatio                 // distinct characters / length
	FExcess                      // (trigram surprisal - 3.5) * letters: total "non-English" evidence, bits
	NumFeatures
)

var featureNames = [NumFeatures]string{
	"length", "entropy", "vowel_ratio", "digit_ratio", "consonant_run", "bigram_surprisal",
	"trigram_surprisal", "rare_bigrams", "letter_digit_switches", "hyphens", "unique_ratio", "surprisal_excess",
}

// String returns the feature's name as it appears in explanations.
func (f Feature) String() string {
	if f < 0 || f >= NumFeatures {
		return "unknown"
	}
	return featureNames[f]
}

// Features holds one label's feature values, indexed by Feature.
type Features [NumFeatures]float64

// RegisteredDomain splits a DNS name into its registered domain (eTLD+1,
// after the Public Suffix List, private domains such as dynamic-DNS
// providers included) and that domain's first label, the part an owner
// chose and a DGA generates. ok is false for names that are a public
// suffix themselves, single labels, IP addresses and names with empty
// labels. It does not allocate: both results are substrings of name.
func RegisteredDomain(name string) (domain, label string, ok bool) {
	domain, label, _, ok = registered(name)
	return domain, label, ok
}

// registered is RegisteredDomain that also tells whether the name's public
// suffix is in the Public Suffix List (ICANN or private section) rather
// than an unlisted top-level label such as "test", "local" or a hex string.
func registered(name string) (domain, label string, listed, ok bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || name[0] == '.' || strings.Contains(name, "..") {
		return "", "", false, false
	}
	if strings.IndexByte(name, '.') < 0 {
		return "", "", false, false
	}
	ps, icann := publicsuffix.PublicSuffix(name)
	if len(name) <= len(ps) || name[len(name)-len(ps)-1] != '.' {
		return "", "", false, false
	}
	listed = icann || strings.IndexByte(ps, '.') >= 0
	rest := name[:len(name)-len(ps)-1]
	i := strings.LastIndexByte(rest, '.')
	if i >= 0 && sharedParents[name[i+1:]] {
		// A free dynamic-DNS parent that the Public Suffix List lacks: its
		// users' names are one level down.
		rest = rest[:i]
		i = strings.LastIndexByte(rest, '.')
	}
	label = rest[i+1:]
	return name[i+1:], label, listed, label != ""
}

// sharedParents are domains under which anyone can register a name for
// free (dynamic DNS) but which the Public Suffix List does not list (those
// it lists, such as ddns.net, no-ip.org or duckdns.org, need no entry).
// Malware likes them because a generated name costs nothing there.
var sharedParents = map[string]bool{
	// FreeDNS (afraid.org) public domains with the most users.
	"afraid.org": true, "mooo.com": true, "yi.org": true, "us.to": true, "uk.to": true,
	"chickenkiller.com": true, "crabdance.com": true, "jumpingcrab.com": true, "ignorelist.com": true,
	"strangled.net": true, "twilightparadox.com": true, "ftp.sh": true,
	// ChangeIP, DynServ.
	"changeip.com": true, "dynserv.com": true,
}

func isVowel(c byte) bool {
	switch c {
	case 'a', 'e', 'i', 'o', 'u', 'y':
		return true
	}
	return false
}

// ngram alphabet index: 0 boundary, 1..26 letters.
func letterIndex(c byte) int { return int(c-'a') + 1 }

// Extract computes the features of one label (lower case expected; other
// bytes count as "other" characters). It does not allocate.
func Extract(label string) Features {
	var f Features
	n := len(label)
	if n == 0 {
		return f
	}
	var counts [256]uint8
	var letters, vowels, digits, hyphens, distinct, switches int
	run, maxRun := 0, 0
	prevClass := 0 // 1 letter, 2 digit
	// n-gram state over letter segments
	var biSum, triSum, ngrams, rare, letterPairs int
	a, b, wordLen := 0, 0, 0
	inSeg := false
	endSeg := func() {
		if !inSeg {
			return
		}
		bc := int(bigramCost[b*alpha+0])
		biSum += bc
		triSum += int(trigramCost[(a*alpha+b)*alpha+0])
		ngrams++
		a, b, inSeg, wordLen = 0, 0, false, 0
	}
	for i := 0; i < n; i++ {
		c := label[i]
		if counts[c] == 0 {
			distinct++
		}
		if counts[c] < 255 {
			counts[c]++
		}
		class := 0
		switch {
		case c >= 'a' && c <= 'z':
			class = 1
			letters++
			if isVowel(c) {
				vowels++
				run = 0
			} else {
				run++
				maxRun = max(maxRun, run)
			}
			x := letterIndex(c)
			bc := int(bigramCost[b*alpha+x])
			if inSeg {
				letterPairs++
				if bc >= rareCost {
					rare++
				}
			}
			biSum += bc
			// Names are often words run together: let the trigram model
			// end the current word and start a new one when that is
			// cheaper than going on (a greedy segmentation).
			tc := int(trigramCost[(a*alpha+b)*alpha+x])
			if wordLen >= minWord {
				if rc := int(trigramCost[(a*alpha+b)*alpha]) + int(trigramCost[x]) + restartCost; rc < tc {
					tc, a, b, wordLen = rc, 0, 0, 0
				}
			}
			triSum += tc
			ngrams++
			a, b, inSeg = b, x, true
			wordLen++
		case c >= '0' && c <= '9':
			class = 2
			digits++
			run = 0
			endSeg()
		default:
			if c == '-' {
				hyphens++
			}
			run = 0
			endSeg()
		}
		if class != 0 && prevClass != 0 && class != prevClass {
			switches++
		}
		if class != 0 {
			prevClass = class
		}
	}
	endSeg()

	// H = log2(n) - Σ c·log2(c) / n over the byte counts c.
	fn := float64(n)
	sum := 0.0
	for i := 0; i < n; i++ { // each distinct byte once: its count is cleared
		sum += clog2c[counts[label[i]]]
		counts[label[i]] = 0
	}
	ent := max(0, math.Log2(fn)-sum/fn)
	f[FLength] = fn
	f[FEntropy] = ent
	if letters > 0 {
		f[FVowelRatio] = float64(vowels) / float64(letters)
	}
	f[FDigitRatio] = float64(digits) / fn
	f[FConsonantRun] = float64(maxRun)
	if ngrams > 0 {
		f[FBigram] = float64(biSum) / float64(ngrams) / 8
		f[FTrigram] = float64(triSum) / float64(ngrams) / 8
	} else {
		// No letters at all: nothing to judge, use typical English values
		// so that the digit features decide.
		f[FBigram], f[FTrigram] = neutralBigram, neutralTrigram
	}
	if letterPairs > 0 {
		f[FRareBigrams] = float64(rare) / float64(letterPairs)
	}
	f[FSwitches] = float64(switches)
	f[FHyphens] = float64(hyphens)
	f[FUniqueRatio] = float64(distinct) / fn
	f[FExcess] = (f[FTrigram] - excessBase) * float64(letters)
	return f
}

// clog2c[c] = c·log2(c), for the entropy without a logarithm per character.
var clog2c = func() (t [256]float64) {
	for c := 2; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

const (
	alpha          = 27
	rareCost       = 64 // 8 bits: P(c|b) < 1/256
	neutralBigram  = 3.6
	neutralTrigram = 3.2
	excessBase     = 3.5
	minWord        = 3  // letters before the trigram model may start a new word
	restartCost    = 16 // 2 bits for starting a new word
)
