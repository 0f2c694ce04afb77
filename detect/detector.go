package detect

import (
	"net"
	"net/netip"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect/enrich"
)

// Env is what the engine gives every detector.
type Env struct {
	// Emit hands an alert to the engine (scoring, asset names, dedupe,
	// incidents, suppression, outputs). The detector must not keep or
	// change the alert after the call.
	Emit func(*Alert)
	// Inv knows the home networks, the asset inventory and learned names.
	Inv  *enrich.Inventory
	Logf func(format string, args ...any)
}

// Detector is one detection module. It receives the events it implements
// an observer interface for (ConnObserver, DNSObserver, ...). Detectors
// are called from one goroutine: they need no locks of their own.
type Detector interface {
	Name() string
}

// Observer interfaces a Detector may implement.
type (
	ConnObserver    interface{ OnConn(*Conn) }
	DNSObserver     interface{ OnDNS(*DNSEvent) }
	TLSObserver     interface{ OnTLS(*TLSEvent) }
	HTTPObserver    interface{ OnHTTP(*HTTPEvent) }
	PayloadObserver interface{ OnPayload(*PayloadEvent) }
	ARPObserver     interface{ OnARP(*ARPEvent) }
	// Ticker is called as event time advances (about once per second of
	// event time), so detectors can expire state and close windows.
	Ticker interface{ Tick(now time.Time) }
	// Statser reports a detector's own counters (state sizes, what it
	// suppressed), for the engine's metrics.
	Statser interface{ Stats() map[string]float64 }
)

// DNSEvent is one DNS message.
type DNSEvent struct {
	Time       time.Time
	Client     netip.Addr // the asker (source of a query, destination of a response)
	ClientPort uint16
	Server     netip.Addr
	Proto      uint8
	Response   bool
	ID         uint16
	QName      string // lower case, no trailing dot
	QType      uint16
	QTypeName  string
	RCode      uint16
	RCodeName  string
	Answers    []DNSAnswer
	Len        int  // message bytes (the whole message, also when the snippet was cut)
	Truncated  bool // the snippet ended before the message
	// Origin is the client on whose behalf the message was sent: Client,
	// or — for a resolver's forwarded copy of a client's question, and the
	// upstream answer to it — the client that asked first. Forwarded marks
	// such copies: they were already counted for Origin.
	Origin    netip.Addr
	Forwarded bool
}

// DNSAnswer is one answer record.
type DNSAnswer struct {
	Name string
	Type uint16
	TTL  uint32
	Addr netip.Addr // A / AAAA
	Data string     // CNAME/NS/PTR/MX target, TXT text
}

// TLSEvent is a client's TLS ClientHello.
type TLSEvent struct {
	Time    time.Time
	Key     event.FlowKey // client -> server
	SNI     string
	ALPN    []string
	Version string // highest offered, e.g. "TLS 1.3"
	JA3     string // the JA3 string
	JA3Hash string
	JA4     string
}

// HTTPEvent is the start of an HTTP/1.x request.
type HTTPEvent struct {
	Time      time.Time
	Key       event.FlowKey
	Method    string
	URI       string
	Host      string
	UserAgent string
}

// PayloadEvent is the first client payload of a TCP flow that is neither
// TLS nor HTTP.
type PayloadEvent struct {
	Time time.Time
	Key  event.FlowKey
	// Data is only valid during the call.
	Data []byte
	// Service is the engine's guess from the bytes: "ssh", "stratum", or "".
	Service string
	// Detail: the Stratum method, or the SSH software version.
	Detail string
}

// ARPEvent is an ARP request or reply.
type ARPEvent struct {
	Time      time.Time
	Op        uint16 // 1 request, 2 reply
	SenderIP  netip.Addr
	SenderMAC net.HardwareAddr
	TargetIP  netip.Addr
}
