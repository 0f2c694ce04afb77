// Package eve writes Suricata-compatible EVE JSON: one JSON object per
// line, with Suricata's field names (timestamp, flow_id, event_type,
// src_ip, src_port, dest_ip, dest_port, proto, community_id, and the
// alert / flow / dns / tls / http objects), so existing SIEM parsers and
// dashboards take Wardline's output as they take Suricata's. Wardline's own
// facts (risk score with its contributions, MITRE, assets, incident) are in
// an extra "wardline" object of alerts.
package eve

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
)

// TimeFormat is Suricata's timestamp layout.
const TimeFormat = "2006-01-02T15:04:05.000000-0700"

// Types selects which event types a Writer writes.
type Types struct {
	Alert, Flow, DNS, TLS, HTTP bool
}

// AllTypes writes every event type.
var AllTypes = Types{Alert: true, Flow: true, DNS: true, TLS: true, HTTP: true}

// Writer writes EVE lines. It is safe for concurrent use.
type Writer struct {
	mu    sync.Mutex
	w     *bufio.Writer
	types Types
	iface string
	n     map[string]uint64
	err   error
}

// NewWriter writes to w; iface fills in_iface.
func NewWriter(w io.Writer, types Types, iface string) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 256<<10), types: types, iface: iface, n: map[string]uint64{}}
}

// Counts returns how many events of each type were written.
func (w *Writer) Counts() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.n))
	for k, v := range w.n {
		out[k] = v
	}
	return out
}

// Flush writes buffered lines out and returns the first write error.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.w.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// Err returns the first write error.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

type header struct {
	Timestamp   string   `json:"timestamp"`
	FlowID      uint64   `json:"flow_id,omitempty"`
	InIface     string   `json:"in_iface,omitempty"`
	EventType   string   `json:"event_type"`
	VLAN        []uint16 `json:"vlan,omitempty"`
	SrcIP       string   `json:"src_ip,omitempty"`
	SrcPort     uint16   `json:"src_port,omitempty"`
	DestIP      string   `json:"dest_ip,omitempty"`
	DestPort    uint16   `json:"dest_port,omitempty"`
	Proto       string   `json:"proto,omitempty"`
	CommunityID string   `json:"community_id,omitempty"`
	ICMPType    *uint16  `json:"icmp_type,omitempty"`
	ICMPCode    *uint16  `json:"icmp_code,omitempty"`
}

func (w *Writer) header(t time.Time, typ string, k *event.FlowKey, cid string) header {
	h := header{Timestamp: t.Format(TimeFormat), InIface: w.iface, EventType: typ, CommunityID: cid}
	if k == nil {
		return h
	}
	h.FlowID = FlowID(*k)
	h.SrcIP, h.DestIP = k.Src.String(), k.Dst.String()
	h.Proto = detect.ProtoName(k.Proto)
	if k.Proto == event.ProtoICMP || k.Proto == event.ProtoICMPv6 {
		t, c := k.SrcPort, k.DstPort
		h.ICMPType, h.ICMPCode = &t, &c
	} else {
		h.SrcPort, h.DestPort = k.SrcPort, k.DstPort
	}
	if k.VLAN[0] != 0 {
		h.VLAN = []uint16{k.VLAN[0]}
		if k.VLAN[1] != 0 {
			h.VLAN = append(h.VLAN, k.VLAN[1])
		}
	}
	return h
}

// FlowID is a stable 51-bit ID of a flow (Suricata's flow_id is an
// opaque integer that JSON consumers keep as a double: stay below 2^53).
// Both directions of a flow get the same ID.
func FlowID(k event.FlowKey) uint64 {
	a, b := netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort)
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	h := fnv.New64a()
	h.Write(a.Addr().AsSlice())
	h.Write([]byte{byte(a.Port() >> 8), byte(a.Port()), k.Proto, byte(k.VLAN[0] >> 8), byte(k.VLAN[0])})
	h.Write(b.Addr().AsSlice())
	h.Write([]byte{byte(b.Port() >> 8), byte(b.Port())})
	return h.Sum64() & (1<<51 - 1)
}

func (w *Writer) write(typ string, v any) {
	b, err := json.Marshal(v)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("encode %s event: %w", typ, err)
		}
		return
	}
	b = append(b, '\n')
	if _, err := w.w.Write(b); err != nil && w.err == nil {
		w.err = fmt.Errorf("write %s event: %w", typ, err)
	}
	w.n[typ]++
}

type alertObj struct {
	Action      string              `json:"action"`
	GID         int                 `json:"gid"`
	SignatureID int                 `json:"signature_id"`
	Rev         int                 `json:"rev"`
	Signature   string              `json:"signature"`
	Category    string              `json:"category"`
	Severity    detect.Severity     `json:"severity"`
	Metadata    map[string][]string `json:"metadata,omitempty"`
}

type wardlineObj struct {
	Type          string                `json:"type"`
	Subtype       string                `json:"subtype,omitempty"`
	Detector      string                `json:"detector"`
	Attacker      string                `json:"attacker"`
	AttackerAsset string                `json:"attacker_asset,omitempty"`
	Victims       []string              `json:"victims,omitempty"`
	VictimAssets  []string              `json:"victim_assets,omitempty"`
	RiskScore     float64               `json:"risk_score"`
	Contributions []detect.Contribution `json:"risk_contributions"`
	Confidence    float64               `json:"confidence"`
	MITRE         detect.MITRE          `json:"mitre"`
	Fingerprint   string                `json:"fingerprint"`
	Incident      string                `json:"incident_id,omitempty"`
	Count         int                   `json:"count"`
	TimeToDetect  float64               `json:"time_to_detect_ms"`
	Evidence      map[string]any        `json:"evidence,omitempty"`
}

// signatureIDs gives each alert type a stable Suricata-style ID in a
// private range (9100000+), so rules-based tooling can key on it.
var signatureIDs = map[string]int{
	detect.TypePortScan: 9100001, detect.TypeHostSweep: 9100002, detect.TypeProtocolAnomaly: 9100003,
	detect.TypeLateral: 9100004, detect.TypeBeaconing: 9100005, detect.TypeExfiltration: 9100006,
	detect.TypeDNSTunnel: 9100007, detect.TypeDGA: 9100008, detect.TypeIOC: 9100009, detect.TypeMining: 9100010,
	detect.TypeLongConnection: 9100011,
}

// Alert writes an alert event.
func (w *Writer) Alert(a *detect.Alert) {
	if !w.types.Alert {
		return
	}
	var k *event.FlowKey
	cid := ""
	if a.Flow != nil {
		fk := a.Flow.Key()
		k = &fk
		cid = a.Flow.CommunityID
	}
	h := w.header(a.Time, "alert", k, cid)
	if k == nil {
		h.SrcIP = a.Attacker.String()
		if len(a.Victims) > 0 {
			h.DestIP = a.Victims[0].String()
		}
	}
	victims := make([]string, len(a.Victims))
	for i, v := range a.Victims {
		victims[i] = v.String()
	}
	w.write("alert", struct {
		header
		Alert    alertObj    `json:"alert"`
		Wardline wardlineObj `json:"wardline"`
	}{h, alertObj{
		Action: "allowed", GID: 1, SignatureID: signatureIDs[a.Type], Rev: 1, Signature: a.Signature,
		Category: a.MITRE.TacticName, Severity: a.Severity,
		Metadata: map[string][]string{"mitre_technique_id": {a.MITRE.TechniqueID}, "mitre_tactic_id": {a.MITRE.TacticID}},
	}, wardlineObj{
		Type: a.Type, Subtype: a.Subtype, Detector: a.Detector, Attacker: a.Attacker.String(), AttackerAsset: a.AttackerAsset,
		Victims: victims, VictimAssets: a.VictimAssets, RiskScore: a.Risk, Contributions: a.Reasons, Confidence: a.Confidence,
		MITRE: a.MITRE, Fingerprint: a.Fingerprint, Incident: a.Incident, Count: a.Count,
		TimeToDetect: float64(a.TimeToDetect) / float64(time.Millisecond), Evidence: a.Evidence,
	}})
}

type flowObj struct {
	PktsToServer  uint64 `json:"pkts_toserver"`
	PktsToClient  uint64 `json:"pkts_toclient"`
	BytesToServer uint64 `json:"bytes_toserver"`
	BytesToClient uint64 `json:"bytes_toclient"`
	Start         string `json:"start"`
	End           string `json:"end"`
	Age           int64  `json:"age"`
	State         string `json:"state"`
	Reason        string `json:"reason"`
	Alerted       bool   `json:"alerted"`
}

type tcpObj struct {
	TCPFlags   string `json:"tcp_flags"`
	TCPFlagsTS string `json:"tcp_flags_ts"`
	TCPFlagsTC string `json:"tcp_flags_tc"`
	SYN        bool   `json:"syn,omitempty"`
	FIN        bool   `json:"fin,omitempty"`
	RST        bool   `json:"rst,omitempty"`
	PSH        bool   `json:"psh,omitempty"`
	ACK        bool   `json:"ack,omitempty"`
	URG        bool   `json:"urg,omitempty"`
	State      string `json:"state,omitempty"`
	ConnState  string `json:"wardline_conn_state"`
	History    string `json:"wardline_history,omitempty"`
}

// Flow writes a flow event for a final connection record.
func (w *Writer) Flow(c *detect.Conn, alerted bool) {
	if !w.types.Flow || !c.Final {
		return
	}
	state, reason := "closed", "timeout"
	switch c.Reason {
	case event.ReasonFIN, event.ReasonRST:
		reason = "shutdown"
	}
	if c.Key.Proto == event.ProtoTCP && c.State == detect.StateS0 {
		state = "new"
	}
	v := struct {
		header
		AppProto string  `json:"app_proto,omitempty"`
		Flow     flowObj `json:"flow"`
		TCP      *tcpObj `json:"tcp,omitempty"`
	}{header: w.header(c.End, "flow", &c.Key, c.CommunityID)}
	if c.App != nil {
		v.AppProto = c.App.Service
	}
	v.Flow = flowObj{PktsToServer: c.OrigPkts, PktsToClient: c.RespPkts, BytesToServer: c.OrigBytes, BytesToClient: c.RespBytes,
		Start: c.Start.Format(TimeFormat), End: c.End.Format(TimeFormat), Age: int64(c.Duration().Seconds()),
		State: state, Reason: reason, Alerted: alerted}
	if c.Key.Proto == event.ProtoTCP {
		f := c.OrigFlags | c.RespFlags
		v.TCP = &tcpObj{TCPFlags: fmt.Sprintf("%02x", f), TCPFlagsTS: fmt.Sprintf("%02x", c.OrigFlags), TCPFlagsTC: fmt.Sprintf("%02x", c.RespFlags),
			SYN: f&event.TCPSyn != 0, FIN: f&event.TCPFin != 0, RST: f&event.TCPRst != 0, PSH: f&event.TCPPsh != 0,
			ACK: f&event.TCPAck != 0, URG: f&event.TCPUrg != 0, ConnState: string(c.State), History: c.History}
		switch {
		case f&event.TCPRst != 0:
			v.TCP.State = "closed"
		case c.OrigFlags&event.TCPFin != 0 && c.RespFlags&event.TCPFin != 0:
			v.TCP.State = "closed"
		case c.Established():
			v.TCP.State = "established"
		default:
			v.TCP.State = "syn_sent"
		}
	}
	w.write("flow", v)
}

type dnsAnswer struct {
	RRName string `json:"rrname"`
	RRType string `json:"rrtype"`
	TTL    uint32 `json:"ttl"`
	RData  string `json:"rdata,omitempty"`
}

type dnsObj struct {
	Version int         `json:"version"`
	Type    string      `json:"type"`
	ID      uint16      `json:"id"`
	RRName  string      `json:"rrname,omitempty"`
	RRType  string      `json:"rrtype,omitempty"`
	RCode   string      `json:"rcode,omitempty"`
	Answers []dnsAnswer `json:"answers,omitempty"`
}

// DNS writes a dns event (EVE format version 2: one event per query, one
// per response with its answers).
func (w *Writer) DNS(e *detect.DNSEvent, k *event.FlowKey, cid string) {
	if !w.types.DNS {
		return
	}
	d := dnsObj{Version: 2, Type: "query", ID: e.ID, RRName: e.QName, RRType: e.QTypeName}
	if e.Response {
		d.Type, d.RCode = "answer", e.RCodeName
		for _, a := range e.Answers {
			rd := a.Data
			if a.Addr.IsValid() {
				rd = a.Addr.String()
			}
			d.Answers = append(d.Answers, dnsAnswer{RRName: a.Name, RRType: typeName(a.Type), TTL: a.TTL, RData: rd})
		}
	}
	w.write("dns", struct {
		header
		DNS dnsObj `json:"dns"`
	}{w.header(e.Time, "dns", k, cid), d})
}

func typeName(t uint16) string {
	switch t {
	case 1:
		return "A"
	case 2:
		return "NS"
	case 5:
		return "CNAME"
	case 6:
		return "SOA"
	case 12:
		return "PTR"
	case 15:
		return "MX"
	case 16:
		return "TXT"
	case 28:
		return "AAAA"
	case 33:
		return "SRV"
	case 10:
		return "NULL"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

type tlsObj struct {
	SNI     string `json:"sni,omitempty"`
	Version string `json:"version,omitempty"`
	JA3     *struct {
		Hash   string `json:"hash"`
		String string `json:"string"`
	} `json:"ja3,omitempty"`
	JA4  string   `json:"ja4,omitempty"`
	ALPN []string `json:"client_alpns,omitempty"`
}

// TLS writes a tls event for a ClientHello.
func (w *Writer) TLS(t *detect.TLSEvent, cid string) {
	if !w.types.TLS {
		return
	}
	o := tlsObj{SNI: t.SNI, Version: t.Version, JA4: t.JA4, ALPN: t.ALPN}
	if t.JA3Hash != "" {
		o.JA3 = &struct {
			Hash   string `json:"hash"`
			String string `json:"string"`
		}{t.JA3Hash, t.JA3}
	}
	w.write("tls", struct {
		header
		TLS tlsObj `json:"tls"`
	}{w.header(t.Time, "tls", &t.Key, cid), o})
}

type httpObj struct {
	Hostname  string `json:"hostname,omitempty"`
	URL       string `json:"url,omitempty"`
	UserAgent string `json:"http_user_agent,omitempty"`
	Method    string `json:"http_method,omitempty"`
}

// HTTP writes an http event for a request.
func (w *Writer) HTTP(h *detect.HTTPEvent, cid string) {
	if !w.types.HTTP {
		return
	}
	w.write("http", struct {
		header
		HTTP httpObj `json:"http"`
	}{w.header(h.Time, "http", &h.Key, cid), httpObj{Hostname: h.Host, URL: h.URI, UserAgent: h.UserAgent, Method: h.Method}})
}
