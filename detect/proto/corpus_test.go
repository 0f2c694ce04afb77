package proto

// A sweep over every capture of the shared corpus: each parser gets the
// snippets the fast path would hand it (DNS messages on port 53, the first
// client payload of each TCP flow, cut at the default 2048-byte snippet
// length) and must return a well-formed result or a *ParseError, never
// panic. Captures in ndpi/ and suricata-verify/decode-* are deliberately
// damaged, so errors are counted, not failed on.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const snippetLen = 2048 // the dataplane's default snippet length

type sweepStats struct {
	files, packets           int
	dns, dnsTrunc, dnsBad    int
	tls, tlsTrunc, tlsBad    int
	http, httpTrunc, httpBad int
	ssh, sshBad, stratum     int
	dnsTypes                 map[string]int
	stratumMethods           map[string]int
}

func TestCorpusSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus sweep skipped in -short mode")
	}
	root := corpusDir(t)
	var files []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			switch strings.ToLower(filepath.Ext(p)) {
			case ".pcap", ".pcapng", ".cap":
				files = append(files, p)
			}
		}
		return nil
	})
	st := sweepStats{dnsTypes: map[string]int{}, stratumMethods: map[string]int{}}
	perFile := map[string]*sweepStats{}
	for _, p := range files {
		pkts, err := readPacketsErr(p)
		if err != nil {
			t.Logf("%s: read stopped after %d packets: %v", strings.TrimPrefix(p, root), len(pkts), err)
		}
		st.files++
		st.packets += len(pkts)
		fs := &sweepStats{dnsTypes: map[string]int{}, stratumMethods: map[string]int{}}
		perFile[filepath.Base(p)] = fs
		var m DNSMessage
		for _, f := range flows(pkts) {
			c := f.client
			if c.proto == 17 && (c.sport == 53 || c.dport == 53) {
				for _, g := range append(f.grams, f.rgrams...) {
					sweepDNS(t, &m, g[:min(len(g), snippetLen)], false, &st, fs)
				}
				continue
			}
			if c.proto != 6 || len(f.segs) == 0 {
				continue
			}
			data, _ := f.stream(snippetLen)
			data = data[:min(len(data), snippetLen)]
			if len(data) == 0 {
				continue
			}
			switch {
			case c.sport == 53 || c.dport == 53:
				sweepDNS(t, &m, data, true, &st, fs)
			case len(data) >= 3 && data[0] == 0x16 && data[1] == 3:
				st.tls++
				_, err := ParseClientHello(data)
				checkErr(t, err, len(data))
				count(err, &st.tlsTrunc, &st.tlsBad)
			case looksLikeHTTP(data):
				st.http++
				_, err := ParseHTTPRequest(data)
				checkErr(t, err, len(data))
				count(err, &st.httpTrunc, &st.httpBad)
			case strings.HasPrefix(string(data[:min(4, len(data))]), "SSH-"):
				st.ssh++
				_, err := ParseSSHIdent(data)
				checkErr(t, err, len(data))
				if errors.Is(err, ErrMalformed) {
					st.sshBad++
				}
			default:
				if m, ok := StratumMethod(data); ok {
					st.stratum++
					st.stratumMethods[m]++
					fs.stratumMethods[m]++
				}
			}
		}
	}
	t.Logf("%d captures, %d packets", st.files, st.packets)
	t.Logf("DNS: %d messages, %d truncated, %d malformed; types %v", st.dns, st.dnsTrunc, st.dnsBad, st.dnsTypes)
	t.Logf("TLS: %d first payloads, %d truncated, %d malformed", st.tls, st.tlsTrunc, st.tlsBad)
	t.Logf("HTTP: %d requests, %d truncated, %d malformed", st.http, st.httpTrunc, st.httpBad)
	t.Logf("SSH: %d banners, %d malformed; Stratum: %d %v", st.ssh, st.sshBad, st.stratum, st.stratumMethods)

	// The generated scenarios were made with real tools and must parse.
	if fs := perFile["stratum_mining.pcap"]; fs != nil && fs.stratumMethods["mining.subscribe"] == 0 {
		t.Errorf("stratum_mining.pcap: no mining.subscribe found: %v", fs.stratumMethods)
	}
	if fs := perFile["dns_tunnel_iodine.pcap"]; fs != nil {
		if fs.dns == 0 || fs.dnsBad > 0 || fs.dnsTypes["NULL"] == 0 {
			t.Errorf("dns_tunnel_iodine.pcap: %d messages, %d malformed, types %v", fs.dns, fs.dnsBad, fs.dnsTypes)
		}
	}
	for _, name := range []string{"benign_background.pcap", "dga_nxdomain.pcap", "ioc_tls.pcap"} {
		if fs := perFile[name]; fs != nil && (fs.dns == 0 || fs.dnsBad > 0 || fs.dnsTrunc > 0) {
			t.Errorf("%s: %d DNS messages, %d truncated, %d malformed", name, fs.dns, fs.dnsTrunc, fs.dnsBad)
		}
	}
}

func sweepDNS(t *testing.T, m *DNSMessage, b []byte, tcp bool, st, fs *sweepStats) {
	err := m.Parse(b, tcp)
	checkErr(t, err, len(b))
	for _, s := range []*sweepStats{st, fs} {
		s.dns++
		count(err, &s.dnsTrunc, &s.dnsBad)
		for _, q := range m.Questions {
			s.dnsTypes[q.Type.String()]++
		}
	}
}

func count(err error, trunc, bad *int) {
	switch {
	case errors.Is(err, ErrTruncated):
		*trunc++
	case errors.Is(err, ErrMalformed):
		*bad++
	}
}

func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "PATCH ", "TRACE "} {
		if strings.HasPrefix(string(b[:min(len(b), 8)]), m) {
			return true
		}
	}
	return false
}
