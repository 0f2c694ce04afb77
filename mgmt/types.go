package mgmt

import "time"

// Flow is a flow record as /api/v1/flows shows it; field names
// follow Suricata's EVE flow events where one exists.
type Flow struct {
	Timestamp     time.Time `json:"timestamp"`
	Proto         string    `json:"proto"`
	SrcIP         string    `json:"src_ip"`
	SrcPort       uint16    `json:"src_port"`
	DestIP        string    `json:"dest_ip"`
	DestPort      uint16    `json:"dest_port"`
	VLAN          []uint16  `json:"vlan,omitempty"`
	InIface       string    `json:"in_iface"`
	PktsToServer  uint64    `json:"pkts_toserver"`
	PktsToClient  uint64    `json:"pkts_toclient"`
	BytesToServer uint64    `json:"bytes_toserver"`
	BytesToClient uint64    `json:"bytes_toclient"`
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	Reason        string    `json:"reason"`
	TCPFlagsTS    string    `json:"tcp_flags_ts,omitempty"`
	TCPFlagsTC    string    `json:"tcp_flags_tc,omitempty"`
}
