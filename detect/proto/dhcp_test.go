package proto

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func dhcpRequest(t testing.TB) []byte {
	d := &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: 0x1234,
		ClientIP: net.IPv4zero, YourClientIP: net.IPv4zero, NextServerIP: net.IPv4zero, RelayAgentIP: net.IPv4zero,
		ClientHWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x11},
		Options: layers.DHCPOptions{
			layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeRequest)}),
			layers.NewDHCPOption(layers.DHCPOptRequestIP, []byte{198, 18, 0, 11}),
			layers.NewDHCPOption(layers.DHCPOptHostname, []byte("laptop-7")),
			layers.NewDHCPOption(layers.DHCPOptClassID, []byte("MSFT 5.0")),
		}}
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseDHCP(t *testing.T) {
	info, err := ParseDHCP(dhcpRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.MsgType != "Request" || info.Hostname != "laptop-7" || info.Addr() != netip.MustParseAddr("198.18.0.11") ||
		info.VendorClass != "MSFT 5.0" || info.ClientMAC.String() != "02:00:00:00:00:11" {
		t.Errorf("%+v", info)
	}
	if _, err := ParseDHCP(make([]byte, 100)); !errors.Is(err, ErrTruncated) {
		t.Errorf("short message: %v", err)
	}
}

func FuzzParseDHCP(f *testing.F) {
	f.Add(dhcpRequest(f))
	f.Add(make([]byte, 240))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseDHCP(b)
		if err == nil && info.Hostname != "" && len(info.Hostname) > len(b) {
			t.Fatal("hostname longer than the message")
		}
	})
}
