package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// builder holds the open namespaces and netlink handles while Up builds.
type builder struct {
	p   *plan
	l   *Lab
	fds map[string]int             // namespace fds, for PeerNamespace
	h   map[string]*netlink.Handle // route netlink socket per namespace
}

func (b *builder) close() {
	for _, h := range b.h {
		h.Close()
	}
	for _, fd := range b.fds {
		unix.Close(fd)
	}
}

// build creates the namespaces and the links of plan p. Every netlink
// request goes through a handle whose socket lives in the target namespace,
// so no goroutine of the caller ever changes namespace; only namespace
// creation and sysctls run on throwaway threads (see Do).
func build(ctx context.Context, p *plan) error {
	b := &builder{p: p, l: p.lab, fds: map[string]int{}, h: map[string]*netlink.Handle{}}
	defer b.close()
	l := p.lab
	t := time.Now()
	stage := func(name string) error {
		l.logf("lab %s: %s in %v", l.ID, name, time.Since(t).Round(time.Millisecond))
		t = time.Now()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("build lab %s: %w", l.ID, err)
		}
		return l.hook(name)
	}

	if err := ensureNetnsDir(); err != nil {
		return err
	}
	for _, ns := range p.namespaces {
		if err := createNamespace(ns); err != nil {
			return err
		}
		l.mu.Lock()
		l.owned[ns] = true
		l.mu.Unlock()
		fd, err := openNamespace(ns)
		if err != nil {
			return err
		}
		b.fds[ns] = fd
		h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open netlink socket in %s: %w", ns, err)
		}
		b.h[ns] = h
		if err := markNamespace(h, ns, l.ID); err != nil {
			return err
		}
	}
	if err := b.sysctls(); err != nil {
		return err
	}
	if err := stage("namespaces"); err != nil {
		return err
	}
	if err := b.links(); err != nil {
		return err
	}
	if err := stage("links"); err != nil {
		return err
	}
	if err := b.addresses(); err != nil {
		return err
	}
	return stage("topology")
}

// labMark starts the alias of lo in every lab namespace. Sweep deletes only
// namespaces that carry it, never another project's namespace that merely
// has a lab-like name.
const labMark = "wardline-lab "

// markNamespace sets lo up and gives it the alias "wardline-lab <id>".
func markNamespace(h *netlink.Handle, ns, id string) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", ns, err)
	}
	if err := h.LinkSetAlias(lo, labMark+id); err != nil {
		return fmt.Errorf("set alias of lo in %s: %w", ns, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", ns, err)
	}
	return nil
}

// isMarked reports whether namespace ns was made by a lab (see labMark).
func isMarked(ns string) bool {
	fd, err := openNamespace(ns)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		return false
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	return err == nil && strings.HasPrefix(lo.Attrs().Alias, labMark)
}

// sysctls sets the per-namespace sysctls before any link exists, so that
// every link is born with them ("default" applies to new links, including
// veth ends moved into the namespace).
func (b *builder) sysctls() error {
	l := b.l
	type kv struct{ k, v string }
	common := []kv{
		// Addresses are usable at once: no duplicate address detection.
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}
	per := map[string][]kv{
		// Switches are silent: no IPv6 (link-local, MLD, RS) on their ports.
		l.OfficeSwitch.NS:   {{"net.ipv6.conf.default.disable_ipv6", "1"}},
		l.InternetSwitch.NS: {{"net.ipv6.conf.default.disable_ipv6", "1"}},
		// The box sends nothing on the data path; a br0 that the daemon
		// creates later is born with IPv6 disabled as well.
		l.Box.NS: {{"net.ipv6.conf.default.disable_ipv6", "1"}},
		l.Hosts[roleRouter].NS: {
			{"net.ipv4.ip_forward", "1"},
			{"net.ipv6.conf.all.forwarding", "1"},
		},
	}
	// Two workers: namespaces are independent and each Do is a thread.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 2)
	)
	for _, ns := range b.p.namespaces {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := Do(ns, func() error {
				for _, s := range append(common, per[ns]...) {
					if err := sysctl(s.k, s.v); err != nil {
						return err
					}
				}
				if ns == l.Box.NS {
					// br_netfilter would hand bridged packets to iptables;
					// the lab box bridges plainly. The sysctls exist only
					// where br_netfilter is built in or loaded.
					for _, k := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.bridge.bridge-nf-call-arptables"} {
						if err := optionalSysctl(k, "0"); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("in %s: %w", ns, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// veth is one veth pair to create, with both ends in lab namespaces.
type veth struct {
	ns, name         string
	mac              net.HardwareAddr // nil: kernel's random MAC
	peerNS, peerName string
	peerMAC          net.HardwareAddr
	master           string // bridge to enslave the *peer* end to, in peerNS ("" = none)
	localMaster      string // bridge to enslave the local end to, in ns ("" = none)
}

func (b *builder) addBridge(ns, name string, mac net.HardwareAddr) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.HardwareAddr = mac // fixed, so it does not follow the ports' MACs
	off := false
	// STP is off for bridges created through netlink. Multicast snooping
	// is turned off too: without a querier it can stop forwarding IPv6
	// neighbour discovery to hosts whose MLD reports it missed.
	br := &netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &off}
	if err := b.h[ns].LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s in %s: %w", name, ns, err)
	}
	return nil
}

func (b *builder) addVeth(v veth) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = v.name
	attrs.HardwareAddr = v.mac
	link := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         v.peerName,
		PeerHardwareAddr: v.peerMAC,
		PeerNamespace:    netlink.NsFd(b.fds[v.peerNS]),
		PeerTxQLen:       -1,
	}
	if err := b.h[v.ns].LinkAdd(link); err != nil {
		return fmt.Errorf("add veth %s in %s with peer %s in %s: %w", v.name, v.ns, v.peerName, v.peerNS, err)
	}
	if v.master != "" {
		if err := b.setMaster(v.peerNS, v.peerName, v.master); err != nil {
			return err
		}
	}
	if v.localMaster != "" {
		if err := b.setMaster(v.ns, v.name, v.localMaster); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) setMaster(ns, port, bridge string) error {
	h := b.h[ns]
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s in %s: %w", bridge, ns, err)
	}
	link, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", port, ns, err)
	}
	if err := h.LinkSetMasterByIndex(link, br.Attrs().Index); err != nil {
		return fmt.Errorf("enslave %s to %s in %s: %w", port, bridge, ns, err)
	}
	return nil
}

func (b *builder) setUp(ns, name string) error {
	h := b.h[ns]
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", name, ns, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up in %s: %w", name, ns, err)
	}
	return nil
}

// links creates the bridges and veth pairs and sets everything up.
func (b *builder) links() error {
	l := b.l
	box := l.Box
	router := l.Hosts[roleRouter]
	mgmt := l.Hosts[roleMgmt]
	osw, isw := l.OfficeSwitch, l.InternetSwitch

	if err := b.addBridge(osw.NS, osw.Bridge, nil); err != nil {
		return err
	}
	if err := b.addBridge(isw.NS, isw.Bridge, nil); err != nil {
		return err
	}
	if box.Bridge != "" {
		if err := b.addBridge(box.NS, box.Bridge, macBridge); err != nil {
			return err
		}
	}
	vs := []veth{
		{ns: box.NS, name: box.Inside, mac: macInside, peerNS: box.InsidePeer.NS, peerName: box.InsidePeer.Iface, master: osw.Bridge, localMaster: box.Bridge},
		{ns: box.NS, name: box.Outside, mac: macOutside, peerNS: router.NS, peerName: RouterLAN, peerMAC: router.MAC, localMaster: box.Bridge},
		{ns: box.NS, name: box.Mgmt, mac: l.Hosts[roleBox].MAC, peerNS: mgmt.NS, peerName: mgmt.Iface, peerMAC: mgmt.MAC},
		{ns: router.NS, name: RouterWAN, mac: wanMAC(), peerNS: isw.NS, peerName: roleRouter, master: isw.Bridge},
	}
	for _, hp := range b.p.hosts {
		sw := osw
		if hp.switchRole == roleInternetSwitch {
			sw = isw
		}
		h := hp.host
		vs = append(vs, veth{ns: h.NS, name: h.Iface, mac: h.MAC, peerNS: sw.NS, peerName: h.Role, master: sw.Bridge})
	}
	for _, v := range vs {
		if err := b.addVeth(v); err != nil {
			return err
		}
	}
	// Belt and braces for the box: its data ports were born with IPv6
	// disabled (default.disable_ipv6=1); say so explicitly per port.
	ports := []string{box.Inside, box.Outside}
	if box.Bridge != "" {
		ports = append(ports, box.Bridge)
	}
	if err := Do(box.NS, func() error {
		for _, p := range ports {
			if err := sysctl("net.ipv6.conf."+p+".disable_ipv6", "1"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("in %s: %w", box.NS, err)
	}

	// Up: bridges, then both ends of every veth (lo is up already).
	ups := []Port{{osw.NS, osw.Bridge}, {isw.NS, isw.Bridge}}
	if box.Bridge != "" {
		ups = append(ups, Port{box.NS, box.Bridge})
	}
	for _, v := range vs {
		ups = append(ups, Port{v.ns, v.name}, Port{v.peerNS, v.peerName})
	}
	for _, u := range ups {
		if err := b.setUp(u.NS, u.Iface); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) addAddr(ns, iface string, p netip.Prefix) error {
	h := b.h[ns]
	link, err := h.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", iface, ns, err)
	}
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Flags: unix.IFA_F_NODAD,
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %v to %s in %s: %w", p, iface, ns, err)
	}
	return nil
}

func (b *builder) addDefault(ns, iface string, gw netip.Addr) error {
	h := b.h[ns]
	link, err := h.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", iface, ns, err)
	}
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("add default route via %v dev %s in %s: %w", gw, iface, ns, err)
	}
	return nil
}

// addresses assigns every address and default route.
func (b *builder) addresses() error {
	l := b.l
	for _, role := range sortedRoles(l.Hosts) {
		h := l.Hosts[role]
		if h.IPv4.IsValid() {
			if err := b.addAddr(h.NS, h.Iface, netip.PrefixFrom(h.IPv4, bits4)); err != nil {
				return err
			}
		}
		if h.IPv6.IsValid() {
			if err := b.addAddr(h.NS, h.Iface, netip.PrefixFrom(h.IPv6, bits6)); err != nil {
				return err
			}
		}
		if h.Gateway4.IsValid() {
			if err := b.addDefault(h.NS, h.Iface, h.Gateway4); err != nil {
				return err
			}
		}
		if h.Gateway6.IsValid() {
			if err := b.addDefault(h.NS, h.Iface, h.Gateway6); err != nil {
				return err
			}
		}
	}
	router := l.Hosts[roleRouter]
	for _, p := range wanPrefixes {
		if err := b.addAddr(router.NS, RouterWAN, p); err != nil {
			return err
		}
	}
	return nil
}
