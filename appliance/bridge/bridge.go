// Package bridge sets up the appliance's bump-in-the-wire: one Linux bridge
// holding exactly the inside and the outside port, spanning tree off, no
// addresses and no IPv6 on the data path (the box stays invisible), and
// bridge netfilter off unless NFQUEUE needs it; and the separate
// management interface.
//
// Functions act on the network namespace of the calling OS thread; callers
// that work in another namespace lock their thread into it first. Setup is
// idempotent: applying it twice changes nothing the second time.
package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/appliance/config"
)

// Setup makes the bridge match c and returns what it changed (empty when
// the system already matched).
func Setup(c config.Bridge) ([]string, error) {
	var changes []string
	changed := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }

	br, err := netlink.LinkByName(c.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if !c.Create {
			return nil, fmt.Errorf("bridge %s does not exist and bridge.create is false", c.Name)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Name}}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", c.Name, err)
		}
		changed("created bridge %s", c.Name)
		if br, err = netlink.LinkByName(c.Name); err != nil {
			return changes, fmt.Errorf("look up new bridge %s: %w", c.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("look up bridge %s: %w", c.Name, err)
	case br.Type() != "bridge":
		return nil, fmt.Errorf("%s exists but is a %s, not a bridge", c.Name, br.Type())
	}

	stp, err := stpState(br.Attrs().Index)
	if err != nil {
		return changes, err
	}
	if stp != 0 {
		if err := setSTPOff(br.Attrs().Index); err != nil {
			return changes, fmt.Errorf("turn off STP on %s: %w", c.Name, err)
		}
		changed("turned off STP on %s", c.Name)
	}

	for _, name := range []string{c.Inside, c.Outside} {
		port, err := netlink.LinkByName(name)
		if err != nil {
			return changes, fmt.Errorf("look up port %s: %w", name, err)
		}
		if port.Attrs().MasterIndex != br.Attrs().Index {
			if !c.Create {
				return changes, fmt.Errorf("port %s is not in bridge %s and bridge.create is false", name, c.Name)
			}
			if err := netlink.LinkSetMaster(port, br); err != nil {
				return changes, fmt.Errorf("add port %s to bridge %s: %w", name, c.Name, err)
			}
			changed("added %s to %s", name, c.Name)
		}
		if port.Attrs().Flags&unix.IFF_UP == 0 {
			if err := netlink.LinkSetUp(port); err != nil {
				return changes, fmt.Errorf("set %s up: %w", name, err)
			}
			changed("set %s up", name)
		}
	}

	// Anything else enslaved to our bridge would join the wire.
	links, err := netlink.LinkList()
	if err != nil {
		return changes, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		n := l.Attrs().Name
		if l.Attrs().MasterIndex == br.Attrs().Index && n != c.Inside && n != c.Outside {
			return changes, fmt.Errorf("bridge %s has an unexpected port %s; a bump-in-the-wire holds exactly %s and %s", c.Name, n, c.Inside, c.Outside)
		}
	}

	for _, name := range []string{c.Name, c.Inside, c.Outside} {
		ch, err := writeSysctl(filepath.Join("net/ipv6/conf", name, "disable_ipv6"), "1")
		if err != nil {
			return changes, err
		}
		if ch {
			changed("disabled IPv6 on %s", name)
		}
	}
	// br_netfilter hands bridged IP traffic to iptables/nftables ip hooks;
	// the inline path does not need it (NFQUEUE inspection turns it on
	// selectively). The sysctls exist only when br_netfilter is loaded.
	for _, s := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		ch, err := writeSysctl(filepath.Join("net/bridge", s), "0")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return changes, err
		}
		if ch {
			changed("set %s=0", s)
		}
	}

	br, err = netlink.LinkByName(c.Name)
	if err != nil {
		return changes, fmt.Errorf("look up bridge %s: %w", c.Name, err)
	}
	if br.Attrs().Flags&unix.IFF_UP == 0 {
		if err := netlink.LinkSetUp(br); err != nil {
			return changes, fmt.Errorf("set %s up: %w", c.Name, err)
		}
		changed("set %s up", c.Name)
	}
	return changes, nil
}

// Check reports how the running system differs from c, without changing
// anything ("" when it matches).
func Check(c config.Bridge) (string, error) {
	br, err := netlink.LinkByName(c.Name)
	if err != nil {
		return "", fmt.Errorf("look up bridge %s: %w", c.Name, err)
	}
	var diffs []string
	if stp, err := stpState(br.Attrs().Index); err != nil {
		return "", err
	} else if stp != 0 {
		diffs = append(diffs, "STP is on")
	}
	for _, name := range []string{c.Inside, c.Outside} {
		p, err := netlink.LinkByName(name)
		if err != nil {
			return "", fmt.Errorf("look up port %s: %w", name, err)
		}
		if p.Attrs().MasterIndex != br.Attrs().Index {
			diffs = append(diffs, name+" is not in the bridge")
		}
		if p.Attrs().OperState != netlink.OperUp {
			diffs = append(diffs, fmt.Sprintf("%s is %s", name, p.Attrs().OperState))
		}
	}
	return strings.Join(diffs, "; "), nil
}

// SetupManagement brings the management interface up and adds missing
// addresses.
func SetupManagement(m config.Management) ([]string, error) {
	l, err := netlink.LinkByName(m.Interface)
	if err != nil {
		return nil, fmt.Errorf("look up management interface %s: %w", m.Interface, err)
	}
	var changes []string
	if l.Attrs().Flags&unix.IFF_UP == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", m.Interface, err)
		}
		changes = append(changes, "set "+m.Interface+" up")
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return changes, fmt.Errorf("list addresses of %s: %w", m.Interface, err)
	}
	for _, p := range m.Addresses {
		found := false
		for _, a := range have {
			if a.IPNet != nil {
				ap, ok := netip.AddrFromSlice(a.IP)
				ones, _ := a.Mask.Size()
				if ok && ap.Unmap() == p.Addr() && ones == p.Bits() {
					found = true
				}
			}
		}
		if found {
			continue
		}
		addr, err := netlink.ParseAddr(p.String())
		if err != nil {
			return changes, fmt.Errorf("parse %v: %w", p, err)
		}
		if p.Addr().Is6() {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return changes, fmt.Errorf("add address %v to %s: %w", p, m.Interface, err)
		}
		changes = append(changes, fmt.Sprintf("added %v to %s", p, m.Interface))
	}
	return changes, nil
}

// writeSysctl sets /proc/sys/<key> to v if it differs; it reports whether
// it wrote. /proc/sys/net follows the calling thread's network namespace.
func writeSysctl(key, v string) (bool, error) {
	path := filepath.Join("/proc/sys", key)
	cur, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read sysctl %s: %w", key, err)
	}
	if strings.TrimSpace(string(cur)) == v {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return false, fmt.Errorf("write sysctl %s=%s: %w", key, v, err)
	}
	return true, nil
}

// stpState reads IFLA_BR_STP_STATE of a bridge over rtnetlink (the
// netlink library does not expose it, and /sys may belong to another
// namespace than the calling thread).
func stpState(ifindex int) (uint32, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return 0, fmt.Errorf("get link %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return 0, fmt.Errorf("parse link %d: %w", ifindex, err)
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_LINKINFO {
				continue
			}
			info, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return 0, fmt.Errorf("parse linkinfo of %d: %w", ifindex, err)
			}
			for _, i := range info {
				if i.Attr.Type != nl.IFLA_INFO_DATA {
					continue
				}
				data, err := nl.ParseRouteAttr(i.Value)
				if err != nil {
					return 0, fmt.Errorf("parse bridge data of %d: %w", ifindex, err)
				}
				for _, d := range data {
					if d.Attr.Type == unix.IFLA_BR_STP_STATE && len(d.Value) >= 4 {
						return binary.NativeEndian.Uint32(d.Value), nil
					}
				}
			}
		}
	}
	return 0, fmt.Errorf("link %d reports no bridge STP state (not a bridge?)", ifindex)
}

func setSTPOff(ifindex int) error { return setSTP(ifindex, 0) }

func setSTP(ifindex int, state uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(state))
	req.AddData(li)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
