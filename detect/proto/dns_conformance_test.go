package proto

// DNS conformance: every DNS message over UDP port 53 in the corpus,
// summarised (id, QR, rcode, question names and types, answer count) and
// compared with TShark's decoding (testdata/dns-tshark.tsv, see its header).

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func dnsSummary(m *DNSMessage) (string, bool) {
	var names, types []string
	for _, q := range m.Questions {
		if strings.ContainsAny(q.Name, ",") {
			return "", false // TShark's comma-joined list is ambiguous
		}
		n := q.Name
		if n == "" {
			n = "*" // TShark prints <Root>
		}
		for i := 0; i < len(n); i++ {
			if c := n[i]; c < 0x21 || c > 0x7e || c == '|' || c == '<' || c == '\\' {
				n = "*"
				break
			}
		}
		names = append(names, n)
		types = append(types, strconv.Itoa(int(q.Type)))
	}
	qr, rc := "0", ""
	if m.Response {
		qr, rc = "1", strconv.Itoa(int(m.RCode))
	}
	return fmt.Sprintf("%d|%s|%s|%s|%s|%d", m.ID, qr, rc, strings.Join(names, ","), strings.Join(types, ","), m.ANCount), true
}

// dnsTSharkKnown are the captures where the comparison cannot hold, and why.
var dnsTSharkKnown = map[string]string{
	"dns_fragmented.pcap": "IP-fragmented responses: TShark reassembles them, this test's extraction " +
		"(like the fast path, which sees the first fragment) does not",
	"malformed_dns.pcap": "a response whose second question name exceeds 255 bytes: ParseDNS reports it " +
		"malformed (RFC 1035 limit, enforced by dnsmessage) where TShark prints <Name too long>",
}

func TestDNSTShark(t *testing.T) {
	root := corpusDir(t)
	f, err := os.Open(filepath.Join("testdata", "dns-tshark.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var checked, matched, msgs int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		pcap, want, wantN := c[0], c[2], c[1]
		if why, ok := dnsTSharkKnown[filepath.Base(pcap)]; ok {
			t.Logf("%s: skipped: %s", pcap, why)
			continue
		}
		pkts, err := readPacketsErr(filepath.Join(root, pcap))
		if err != nil && len(pkts) == 0 {
			t.Logf("%s: %v: skipped", pcap, err)
			continue
		}
		checked++
		set := map[string]bool{}
		var m DNSMessage
		for _, fl := range flows(pkts) {
			if fl.client.proto != 17 || fl.client.sport != 53 && fl.client.dport != 53 {
				continue
			}
			for _, g := range append(fl.grams, fl.rgrams...) {
				if m.Parse(g, false) != nil {
					continue
				}
				if s, ok := dnsSummary(&m); ok {
					set[s] = true
				}
			}
		}
		lines := make([]string, 0, len(set))
		for s := range set {
			lines = append(lines, s)
		}
		slices.Sort(lines)
		sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
		msgs += len(lines)
		if got := hex.EncodeToString(sum[:]); got != want || strconv.Itoa(len(lines)) != wantN {
			t.Errorf("%s: %d distinct messages (sha256 %s), TShark %s (%s); first: %q", pcap, len(lines), got[:12], wantN, want[:12], lines[:min(3, len(lines))])
			continue
		}
		matched++
	}
	t.Logf("DNS vs TShark: %d captures checked, %d matched (%d distinct messages)", checked, matched, msgs)
}
