package proto

import (
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func BenchmarkParseDNS(b *testing.B) {
	query := buildQuery(b, "www.example.com.", dnsmessage.TypeA)
	resp := buildResponse(b)
	for _, c := range []struct {
		name string
		in   []byte
		tcp  bool
	}{
		{"query", query, false},
		{"response", resp, false},
		{"response-tcp", withPrefix(resp), true},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			var m DNSMessage
			for b.Loop() {
				if err := m.Parse(c.in, c.tcp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("response-ParseDNS", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseDNS(resp, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParseClientHello(b *testing.B) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"browser-1-record", records(specHello(), 1<<14)},
		{"browser-3-records", records(specHello(), 200)},
		{"go-crypto-tls", goClientHello(b)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				if _, err := ParseClientHello(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFingerprints(b *testing.B) {
	h, err := ParseClientHello(records(specHello(), 1<<14))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("JA3", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = h.JA3()
		}
	})
	b.Run("JA4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = h.JA4(JA4TCP)
		}
	})
}

func BenchmarkParseHTTPRequest(b *testing.B) {
	in := []byte(curlRequest)
	browser := []byte("GET /assets/app.js?v=3 HTTP/1.1\r\nHost: www.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Referer: https://www.example.com/\r\nConnection: keep-alive\r\nSec-Fetch-Dest: script\r\n" +
		"Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n\r\n")
	for _, c := range []struct {
		name string
		in   []byte
	}{{"curl", in}, {"browser", browser}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				if _, err := ParseHTTPRequest(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPayload(b *testing.B) {
	stratum := []byte(`{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}` + "\n")
	notStratum := []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
	ssh := []byte("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
	b.Run("StratumMethod", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := StratumMethod(stratum); !ok {
				b.Fatal("not stratum")
			}
		}
	})
	b.Run("StratumMethod-miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			StratumMethod(notStratum)
		}
	})
	b.Run("ParseSSHIdent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ParseSSHIdent(ssh); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkQUICInitial(b *testing.B) {
	d := quicSeeds(b)[0]
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		var c QUICCrypto
		if err := c.AddDatagram(d); err != nil {
			b.Fatal(err)
		}
		if _, err := ParseClientHelloHandshake(c.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}
