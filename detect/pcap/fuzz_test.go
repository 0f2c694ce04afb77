package pcap

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/wardline/wardline/dataplane/event"
)

// seedCapture returns a small pcap or pcapng file of frames.
func seedCapture(t testing.TB, ng bool, lt layers.LinkType, frames ...[]byte) []byte {
	var buf bytes.Buffer
	type writer interface {
		WritePacket(gopacket.CaptureInfo, []byte) error
	}
	var w writer
	if ng {
		nw, err := pcapgo.NewNgWriter(&buf, lt)
		if err != nil {
			t.Fatal(err)
		}
		defer nw.Flush()
		w = nw
	} else {
		pw := pcapgo.NewWriter(&buf)
		if err := pw.WriteFileHeader(65535, lt); err != nil {
			t.Fatal(err)
		}
		w = pw
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Second), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if nw, ok := w.(*pcapgo.NgWriter); ok {
		nw.Flush()
	}
	return buf.Bytes()
}

func seedFrames(t testing.TB) [][]byte {
	return [][]byte{
		tcpFrame(t, client4, server4, 40000, 443, tcpSeg{flags: "S", seq: 1}),
		tcpFrame(t, client4, server4, 40000, 443, tcpSeg{flags: "AP", seq: 2, payload: []byte{0x16, 3, 1, 0, 40, 1, 0, 0, 36}}),
		udpFrame(t, client6, server6, 5353, 53, dnsQuery(t, 9, "fuzz.example")),
		tcpFrame(t, server4, client4, 443, 40000, tcpSeg{flags: "RA"}),
	}
}

// FuzzReadPcap feeds arbitrary bytes to the reader and the tracker: they
// must never panic, and every failure is a *ReadError (or a clean end).
func FuzzReadPcap(f *testing.F) {
	frames := seedFrames(f)
	f.Add(seedCapture(f, false, layers.LinkTypeEthernet, frames...))
	f.Add(seedCapture(f, true, layers.LinkTypeEthernet, frames...))
	f.Add(seedCapture(f, true, layers.LinkTypeLinuxSLL2, frames[0][14:]))
	f.Add(seedCapture(f, false, layers.LinkTypeRaw, frames[2][14:]))
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	f.Add([]byte("\x0a\x0d\x0d\x0a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b), "fuzz")
		if err != nil {
			var re *ReadError
			if !errors.As(err, &re) {
				t.Fatalf("NewReader: %v (%T), want a *ReadError", err, err)
			}
			return
		}
		tr, err := NewTracker(Options{}, event.HandlerFuncs{Snippet: func(s *event.Snippet) {
			if len(s.Data) == 0 || len(s.Data) > DefaultSnippetLen {
				t.Fatalf("snippet of %d bytes", len(s.Data))
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 100000; n++ {
			pk, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var re *ReadError
				if !errors.As(err, &re) || re.Offset < 0 || re.Offset > int64(len(b)) {
					t.Fatalf("Next: %v (%T)", err, err)
				}
				if _, again := r.Next(); again != err {
					t.Fatalf("error not sticky: %v then %v", err, again)
				}
				break
			}
			tr.Packet(pk)
		}
		tr.Flush()
	})
}

// FuzzTracker feeds arbitrary frames of each link type to the tracker:
// every packet lands in exactly one counter (non-IP, a parse error, or a
// flow), snippets stay inside the frame, and the flush leaves nothing.
func FuzzTracker(f *testing.F) {
	for _, fr := range seedFrames(f) {
		f.Add(uint8(0), fr, uint16(0))
		f.Add(uint8(3), fr[14:], uint16(100))
	}
	f.Add(uint8(0), ipv6ExtFrame(f, 6, []byte("x")), uint16(0))
	f.Add(uint8(0), vlanFrame([]uint16{1, 2}, []layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}, seedFrames(f)[2]), uint16(0))
	lts := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw,
		layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypeC_HDLC}
	f.Fuzz(func(t *testing.T, ltSel uint8, frame []byte, extra uint16) {
		lt := lts[int(ltSel)%len(lts)]
		var flows, finals uint64
		tr, err := NewTracker(Options{SnippetLen: 64}, event.HandlerFuncs{
			Flow: func(fl *event.Flow) {
				flows++
				if fl.Final {
					finals += fl.Packets[0] + fl.Packets[1]
				}
			},
			Snippet: func(s *event.Snippet) {
				if len(s.Data) == 0 || len(s.Data) > 64 || !within(s.Data, frame) {
					t.Fatalf("snippet of %d bytes outside the frame", len(s.Data))
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			tr.Packet(&Packet{Time: t0.Add(time.Duration(i) * time.Second), Data: frame, Length: len(frame) + int(extra), LinkType: lt})
		}
		st := tr.Stats()
		other := st.NonIP + st.ParseErrors()
		if st.Packets != 2 || (other != 0 && other != 2) {
			t.Fatalf("stats %+v: a frame counted twice or not at all", st)
		}
		tr.Flush()
		if other == 0 && finals != 2 {
			t.Fatalf("final records hold %d packets, want 2 (stats %+v)", finals, tr.Stats())
		}
		if tr.Flows() != 0 {
			t.Fatal("flows left after Flush")
		}
	})
}

// within reports whether s lies inside b's backing array.
func within(s, b []byte) bool {
	if len(s) == 0 {
		return true
	}
	for i := range b {
		if &b[i] == &s[0] {
			return i+len(s) <= len(b)
		}
	}
	return false
}
