package proto

import (
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// DHCPInfo is what passive discovery needs from a DHCPv4 message.
type DHCPInfo struct {
	Op          uint8  // 1 request (client), 2 reply (server)
	MsgType     string // "Discover", "Request", "Ack", ... ("" without option 53)
	ClientMAC   net.HardwareAddr
	ClientIP    netip.Addr // ciaddr (renewals)
	YourIP      netip.Addr // yiaddr (the address offered or acknowledged)
	RequestedIP netip.Addr // option 50
	Hostname    string     // option 12
	VendorClass string     // option 60
}

// Addr returns the address the message names for the client: the one
// acknowledged, else requested, else the client's current one.
func (d *DHCPInfo) Addr() netip.Addr {
	for _, a := range []netip.Addr{d.YourIP, d.RequestedIP, d.ClientIP} {
		if a.IsValid() && !a.IsUnspecified() {
			return a
		}
	}
	return netip.Addr{}
}

// ParseDHCP parses a DHCPv4 message with gopacket's BOOTP/DHCP decoder.
func ParseDHCP(b []byte) (DHCPInfo, error) {
	var d layers.DHCPv4
	if len(b) < 240 {
		return DHCPInfo{}, truncErr("dhcp", "BOOTP header and magic cookie", 0, "need 240 bytes")
	}
	if err := d.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return DHCPInfo{}, &ParseError{Proto: "dhcp", What: "message", Kind: ErrMalformed, Err: err}
	}
	info := DHCPInfo{Op: uint8(d.Operation), ClientMAC: d.ClientHWAddr}
	info.ClientIP, _ = netip.AddrFromSlice(d.ClientIP.To4())
	info.YourIP, _ = netip.AddrFromSlice(d.YourClientIP.To4())
	for _, o := range d.Options {
		switch o.Type {
		case layers.DHCPOptMessageType:
			if len(o.Data) == 1 {
				info.MsgType = layers.DHCPMsgType(o.Data[0]).String()
			}
		case layers.DHCPOptHostname:
			info.Hostname = string(o.Data)
		case layers.DHCPOptRequestIP:
			if len(o.Data) == 4 {
				info.RequestedIP = netip.AddrFrom4([4]byte(o.Data))
			}
		case layers.DHCPOptClassID:
			info.VendorClass = string(o.Data)
		}
	}
	return info, nil
}
