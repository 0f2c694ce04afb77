package detect

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardline/wardline/dataplane/event"
)

// Alert types (the corpus labels use the same names).
const (
	TypePortScan        = "port_scan"
	TypeHostSweep       = "host_sweep"
	TypeProtocolAnomaly = "protocol_anomaly"
	TypeLateral         = "lateral_movement"
	TypeBeaconing       = "c2_beaconing"
	TypeExfiltration    = "exfiltration"
	TypeDNSTunnel       = "dns_tunnel"
	TypeDGA             = "dga"
	TypeIOC             = "ioc_match"
	TypeMining          = "crypto_mining"
	TypeLongConnection  = "long_connection"
)

// Severity follows Suricata's scale: 1 is the most severe.
type Severity int

const (
	SeverityHigh   Severity = 1
	SeverityMedium Severity = 2
	SeverityLow    Severity = 3
)

// Contribution is one feature's share of a risk score: what was observed,
// and how many points it added.
type Contribution struct {
	Feature string  `json:"feature"` // e.g. "distinct_ports"
	Value   float64 `json:"value"`   // the observed value
	Points  float64 `json:"points"`  // its share of the score
	Why     string  `json:"why"`     // human explanation
}

// Alert is one detection. Detectors fill what they know; the engine adds
// asset names, the score total, dedupe and incident bookkeeping.
type Alert struct {
	Type      string    `json:"type"`
	Subtype   string    `json:"subtype,omitempty"`
	Detector  string    `json:"detector"`
	Signature string    `json:"signature"` // one line for humans
	Time      time.Time `json:"timestamp"` // event time of the decisive packet
	// Attacker is the host acting (the scanner, the beaconing client, the
	// exfiltrating host); Victims are what it acted on.
	Attacker netip.Addr   `json:"attacker"`
	Victims  []netip.Addr `json:"victims,omitempty"`
	// Key identifies the decisive flow when there is one (Community ID
	// and EVE 5-tuple fields come from it).
	Flow *FlowRef `json:"flow,omitempty"`

	MITRE      MITRE          `json:"mitre"`
	Confidence float64        `json:"confidence"` // 0..1
	Severity   Severity       `json:"severity"`
	Risk       float64        `json:"risk_score"` // 0..100, the sum of Contributions (capped)
	Reasons    []Contribution `json:"risk_contributions"`
	Evidence   map[string]any `json:"evidence,omitempty"`

	// Filled by the engine.
	AttackerAsset string        `json:"attacker_asset,omitempty"`
	VictimAssets  []string      `json:"victim_assets,omitempty"`
	Fingerprint   string        `json:"fingerprint"`
	Incident      string        `json:"incident_id,omitempty"`
	Count         int           `json:"count"`          // occurrences merged into this alert by dedupe
	TimeToDetect  time.Duration `json:"time_to_detect"` // decisive packet -> alert (processing time)
}

// FlowRef names the flow an alert is about.
type FlowRef struct {
	Proto       string     `json:"proto"`
	Src         netip.Addr `json:"src_ip"`
	SrcPort     uint16     `json:"src_port"`
	Dst         netip.Addr `json:"dest_ip"`
	DstPort     uint16     `json:"dest_port"`
	CommunityID string     `json:"community_id"`

	key event.FlowKey
}

// NewFlowRef refers to the flow with key k.
func NewFlowRef(k event.FlowKey) *FlowRef {
	return &FlowRef{Proto: ProtoName(k.Proto), Src: k.Src, SrcPort: k.SrcPort, Dst: k.Dst, DstPort: k.DstPort, key: k}
}

// Key returns the flow key.
func (r *FlowRef) Key() event.FlowKey { return r.key }

// ProtoName is Suricata's name for an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case event.ProtoTCP:
		return "TCP"
	case event.ProtoUDP:
		return "UDP"
	case event.ProtoICMP:
		return "ICMP"
	case event.ProtoICMPv6:
		return "IPv6-ICMP"
	}
	return strconv.Itoa(int(p))
}

// MITRE names an ATT&CK technique.
type MITRE struct {
	TacticID      string `json:"tactic_id"`
	TacticName    string `json:"tactic_name"`
	TechniqueID   string `json:"technique_id"`
	TechniqueName string `json:"technique_name"`
}

// ATT&CK techniques the detectors use.
var (
	MITRENetworkScan    = MITRE{"TA0007", "Discovery", "T1046", "Network Service Discovery"}
	MITREHostDiscovery  = MITRE{"TA0007", "Discovery", "T1018", "Remote System Discovery"}
	MITRERemoteService  = MITRE{"TA0008", "Lateral Movement", "T1021", "Remote Services"}
	MITREC2AppLayer     = MITRE{"TA0011", "Command and Control", "T1071", "Application Layer Protocol"}
	MITREExfilC2        = MITRE{"TA0010", "Exfiltration", "T1041", "Exfiltration Over C2 Channel"}
	MITREExfilWeb       = MITRE{"TA0010", "Exfiltration", "T1567", "Exfiltration Over Web Service"}
	MITREDNSTunnel      = MITRE{"TA0011", "Command and Control", "T1071.004", "Application Layer Protocol: DNS"}
	MITREDGA            = MITRE{"TA0011", "Command and Control", "T1568.002", "Dynamic Resolution: Domain Generation Algorithms"}
	MITREResourceHijack = MITRE{"TA0040", "Impact", "T1496", "Resource Hijacking"}
	MITRENonStdPort     = MITRE{"TA0011", "Command and Control", "T1571", "Non-Standard Port"}
	MITREIngress        = MITRE{"TA0011", "Command and Control", "T1105", "Ingress Tool Transfer"}
)

// Score fills Risk from Reasons (capped at 100) and derives Severity
// from it when the detector left Severity zero.
func (a *Alert) Score() {
	total := 0.0
	for _, c := range a.Reasons {
		total += c.Points
	}
	a.Risk = min(100, max(0, total))
	if a.Severity == 0 {
		switch {
		case a.Risk >= 70:
			a.Severity = SeverityHigh
		case a.Risk >= 40:
			a.Severity = SeverityMedium
		default:
			a.Severity = SeverityLow
		}
	}
}

// Explain renders the risk contributions, largest first, for humans.
func (a *Alert) Explain() string {
	cs := append([]Contribution(nil), a.Reasons...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Points > cs[j].Points })
	var b strings.Builder
	fmt.Fprintf(&b, "risk %.0f:", a.Risk)
	for _, c := range cs {
		fmt.Fprintf(&b, " +%.0f %s (%s)", c.Points, c.Feature, c.Why)
	}
	return b.String()
}
