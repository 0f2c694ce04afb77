// Command dgagen builds the DGA detector's lexical model (package dga):
//
//	dgagen ngrams -dict /usr/share/dict/american-english -out ngram_gen.go
//	dgagen train  -data chrmor_dga_domains_sample.csv -benign testdata/benign.txt -out model_gen.go
//
// "ngrams" counts English letter bigrams and trigrams in a word list (Debian
// package wamerican); "train" fits the logistic weights of the features on
// the training part of a labelled list (label,family,domain) plus a benign
// list, and prints precision and recall on the held-back part. Neither step
// ever reads the nDPI evaluation files. Both outputs are committed; run
// them through `go generate ./detect/dga/` (see gen.go) after changing the
// features.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dgagen ngrams|train [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ngrams":
		err = runNgrams(os.Args[2:])
	case "train":
		err = runTrain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want ngrams or train)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dgagen:", err)
		os.Exit(1)
	}
}

func runNgrams(args []string) error {
	fs := flag.NewFlagSet("ngrams", flag.ExitOnError)
	dict := fs.String("dict", "/usr/share/dict/american-english", "word lists, comma-separated, each optionally path:max (at most max words of it)")
	data := fs.String("data", "", "labelled CSV (label,family,domain): the legitimate names of its training part are counted too")
	holdout := fs.Int("holdout", 3, "tenths of the labelled CSV held back for validation (as for train)")
	weight := fs.Int("weight", 3, "how many times each legitimate training name counts")
	out := fs.String("out", "ngram_gen.go", "Go file to write")
	fs.Parse(args)
	var words []string
	var sources []string
	for _, d := range strings.Split(*dict, ",") {
		path, limit := d, 0
		if i := strings.LastIndexByte(d, ':'); i >= 0 {
			n, err := strconv.Atoi(d[i+1:])
			if err != nil {
				return fmt.Errorf("-dict %q: %w", d, err)
			}
			path, limit = d[:i], n
		}
		ws, err := readWords(path, limit)
		if err != nil {
			return err
		}
		words = append(words, ws...)
		sources = append(sources, fmt.Sprintf("%d words of %s", len(ws), baseName(path)))
	}
	source := strings.Join(sources, ", ")
	if *data != "" {
		legit, err := legitLabels(*data, *holdout)
		if err != nil {
			return err
		}
		for range *weight {
			words = append(words, legit...)
		}
		source += fmt.Sprintf(" and %d legitimate labels (x%d) of the training part of %s", len(legit), *weight, baseName(*data))
	}
	bi, tri := ngramCosts(words)
	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	if err := writeNgrams(f, source, bi, tri); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return f.Close()
}
