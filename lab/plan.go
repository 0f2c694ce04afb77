package lab

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
)

// Interface and bridge names inside the lab. Names are fixed because every
// link lives in a namespace of its own lab; see the package comment.
const (
	HostIface     = "eth0"  // the one interface of every office and internet host
	BoxInside     = "in0"   // box port towards the office switch
	BoxOutside    = "out0"  // box port towards the router
	BoxBridge     = "br0"   // bridge joining in0 and out0 (unless Config.NoBoxBridge)
	BoxMgmt       = "mgmt0" // box management port, peer of eth0 in <id>-mgmt
	RouterLAN     = "lan0"  // router interface, peer of the box's out0
	RouterWAN     = "wan0"  // router interface into the internet switch
	SwitchBridge  = "sw0"   // the bridge in <id>-osw and <id>-isw
	boxInsidePeer = "box-in0"
)

// Namespace roles that are not hosts.
const (
	roleOfficeSwitch   = "osw"
	roleInternetSwitch = "isw"
	roleBox            = "box"
	roleRouter         = "router"
	roleMgmt           = "mgmt"
)

// MaxClients is the largest Config.Clients. Clients 1–9 get 198.18.0.11–.19,
// clients 10–150 get 198.18.0.110–.250, so they never meet the servers
// (.20, .21), the resolver (.53) or the router (.1).
const MaxClients = 150

// Lab-wide addresses.
var (
	officeGW4   = netip.MustParseAddr("198.18.0.1")
	officeGW6   = netip.MustParseAddr("2001:db8:18::1")
	internetGW6 = netip.MustParseAddr("2001:db8:113::1")
	boxMgmt4    = netip.MustParseAddr("198.18.254.1")
	operMgmt4   = netip.MustParseAddr("198.18.254.2")
	// wanPrefixes are the router's addresses on wan0, one per internet subnet.
	wanPrefixes = []netip.Prefix{
		netip.MustParsePrefix("203.0.113.1/24"),
		netip.MustParsePrefix("198.51.100.1/24"),
		netip.MustParsePrefix("192.0.2.1/24"),
		netip.MustParsePrefix("2001:db8:113::1/64"),
	}
)

// Prefix lengths of every lab subnet.
const (
	bits4 = 24
	bits6 = 64
)

// Lab DNS names, answered by the dns host (external names) and by the
// resolver (internal corp names); every other name is NXDOMAIN.
const (
	WebName     = "web.example.com"
	C2Name      = "c2.example.net"
	MirrorName  = "mirror.example.org"
	Server1Name = "server1.corp.example.com"
	Server2Name = "server2.corp.example.com"
)

var idRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}$`)

// validateID reports whether id can name a lab: 2–12 lower-case letters and
// digits starting with a letter (no '-', which separates the ID from roles).
func validateID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("invalid lab ID %q: want 2-12 characters [a-z0-9] starting with a letter", id)
	}
	return nil
}

// nsName is the namespace name of role in lab id.
func nsName(id, role string) string { return id + "-" + role }

// hostPlan is one host of the plan with its attachment to a switch.
type hostPlan struct {
	host       *Host
	switchRole string // roleOfficeSwitch or roleInternetSwitch
}

// plan is the whole topology of one lab, computed without touching the
// kernel so that it can be checked by unit tests.
type plan struct {
	lab        *Lab
	hosts      []hostPlan // office and internet hosts with one eth0 into a switch
	namespaces []string   // in creation order
}

// mac returns the lab's fixed MAC for an interface holding addr.
func mac(addr netip.Addr) net.HardwareAddr {
	a := addr.As4()
	return net.HardwareAddr{0x02, 0x00, a[0], a[1], a[2], a[3]}
}

// Fixed MACs of box interfaces without IPv4 addresses.
var (
	macBridge  = net.HardwareAddr{0x02, 0x77, 0x6c, 0x00, 0x00, 0x00}
	macInside  = net.HardwareAddr{0x02, 0x77, 0x6c, 0x00, 0x00, 0x01}
	macOutside = net.HardwareAddr{0x02, 0x77, 0x6c, 0x00, 0x00, 0x02}
)

// clientOctet is the last IPv4 octet of client i (1-based).
func clientOctet(i int) int {
	if i <= 9 {
		return 10 + i
	}
	return 100 + i
}

// v6With returns prefix6 (a /64 ending in "::") with the decimal digits of
// octet written as the last hex group, the lab's convention that keeps
// 198.18.0.53 and 2001:db8:18::53 visibly related.
func v6With(prefix6 string, octet int) netip.Addr {
	return netip.MustParseAddr(prefix6 + strconv.Itoa(octet))
}

// newPlan computes the topology of lab id with the given number of clients.
func newPlan(id string, clients int, boxBridge bool) *plan {
	l := &Lab{
		ID:       id,
		Hosts:    map[string]*Host{},
		Resolver: netip.MustParseAddr("198.18.0.53"),
		Names: map[string]string{
			WebName:     "web",
			C2Name:      "c2",
			MirrorName:  "mirror",
			Server1Name: "server1",
			Server2Name: "server2",
		},
		OfficeSwitch:   Switch{NS: nsName(id, roleOfficeSwitch), Bridge: SwitchBridge},
		InternetSwitch: Switch{NS: nsName(id, roleInternetSwitch), Bridge: SwitchBridge},
	}
	p := &plan{lab: l}
	p.namespaces = append(p.namespaces, l.OfficeSwitch.NS, l.InternetSwitch.NS)

	office := func(role string, octet int) {
		v4 := netip.AddrFrom4([4]byte{198, 18, 0, byte(octet)})
		h := &Host{
			Role: role, NS: nsName(id, role), Iface: HostIface,
			IPv4: v4, IPv6: v6With("2001:db8:18::", octet), MAC: mac(v4),
			Gateway4: officeGW4, Gateway6: officeGW6,
		}
		p.hosts = append(p.hosts, hostPlan{host: h, switchRole: roleOfficeSwitch})
	}
	for i := 1; i <= clients; i++ {
		office(fmt.Sprintf("client%d", i), clientOctet(i))
	}
	office("resolver", 53)
	office("server1", 20)
	office("server2", 21)

	internet := func(role, v4s, v6s string) {
		v4 := netip.MustParseAddr(v4s)
		a := v4.As4()
		h := &Host{
			Role: role, NS: nsName(id, role), Iface: HostIface,
			IPv4: v4, IPv6: netip.MustParseAddr(v6s), MAC: mac(v4),
			Gateway4: netip.AddrFrom4([4]byte{a[0], a[1], a[2], 1}), Gateway6: internetGW6,
		}
		p.hosts = append(p.hosts, hostPlan{host: h, switchRole: roleInternetSwitch})
	}
	internet("web", "203.0.113.10", "2001:db8:113::10")
	internet("dns", "203.0.113.53", "2001:db8:113::53")
	internet("c2", "198.51.100.66", "2001:db8:113::66")
	internet("mirror", "192.0.2.10", "2001:db8:113::a")

	for _, hp := range p.hosts {
		l.Hosts[hp.host.Role] = hp.host
		p.namespaces = append(p.namespaces, hp.host.NS)
	}

	router := &Host{
		Role: roleRouter, NS: nsName(id, roleRouter), Iface: RouterLAN,
		IPv4: officeGW4, IPv6: officeGW6, MAC: mac(officeGW4),
	}
	mgmt := &Host{
		Role: roleMgmt, NS: nsName(id, roleMgmt), Iface: HostIface,
		IPv4: operMgmt4, MAC: mac(operMgmt4),
	}
	box := &Host{
		Role: roleBox, NS: nsName(id, roleBox), Iface: BoxMgmt,
		IPv4: boxMgmt4, MAC: mac(boxMgmt4),
	}
	l.Hosts[roleRouter] = router
	l.Hosts[roleMgmt] = mgmt
	l.Hosts[roleBox] = box
	p.namespaces = append(p.namespaces, router.NS, mgmt.NS, box.NS)

	l.Box = Box{
		NS:          box.NS,
		Inside:      BoxInside,
		Outside:     BoxOutside,
		Mgmt:        BoxMgmt,
		MgmtAddr:    boxMgmt4,
		InsidePeer:  Port{NS: l.OfficeSwitch.NS, Iface: boxInsidePeer},
		OutsidePeer: Port{NS: router.NS, Iface: RouterLAN},
	}
	if boxBridge {
		l.Box.Bridge = BoxBridge
	}
	l.Namespaces = p.namespaces
	return p
}

// wanMAC is the fixed MAC of the router's wan0.
func wanMAC() net.HardwareAddr { return mac(wanPrefixes[0].Addr()) }
