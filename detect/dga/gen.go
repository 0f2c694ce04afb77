package dga

// The lexical model is generated and committed: ngram_gen.go from an English
// word list (Debian package wamerican), model_gen.go from the training part
// of the chrmor sample in ../shared/corpus plus testdata/benign.txt. The nDPI
// evaluation files are never read. See README.md, "The lexical model".
//go:generate go run ./internal/dgagen ngrams -dict /usr/share/dict/american-english -out ngram_gen.go
//go:generate go run ./internal/dgagen train -data ../../../shared/corpus/public/dga/chrmor_dga_domains_sample.csv -benign testdata/benign.txt -drop length,unique_ratio,vowel_ratio,rare_bigrams,consonant_run -out model_gen.go
