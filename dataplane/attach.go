package dataplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Mode is the XDP attach mode. It is always explicit: an automatic fallback
// from native to generic would hide a large slowdown (xdp-tools #108).
type Mode string

const (
	ModeGeneric Mode = "generic" // skb mode: works on every device, sees GSO super-packets
	ModeNative  Mode = "native"  // driver mode: needs driver support (veth has it)
)

// ParseMode parses "generic" or "native".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeGeneric, ModeNative:
		return Mode(s), nil
	}
	return "", fmt.Errorf("XDP mode %q: must be %q or %q", s, ModeGeneric, ModeNative)
}

func (m Mode) flags() link.XDPAttachFlags {
	if m == ModeNative {
		return link.XDPDriverMode
	}
	return link.XDPGenericMode
}

// PortRole says which side of the bump-in-the-wire a port faces.
type PortRole uint32

const (
	RoleUnknown PortRole = 0
	RoleInside  PortRole = 1 // office / LAN
	RoleOutside PortRole = 2 // uplink / WAN
)

func (r PortRole) String() string {
	switch r {
	case RoleInside:
		return "inside"
	case RoleOutside:
		return "outside"
	}
	return "unknown"
}

// Attachment describes the fast path on one interface.
type Attachment struct {
	Ifname  string
	Ifindex int
	Role    PortRole
	Mode    Mode
	// Reused is true when a pinned link from an earlier run was found and
	// its program replaced atomically (no gap in forwarding or blocking).
	Reused bool
	LinkID uint32
}

type attached struct {
	Attachment
	l link.Link
}

func linkPin(dir, ifname string) string { return filepath.Join(dir, "link_xdp_"+ifname) }

// Attach attaches the packet program to ifname in mode and registers the
// port's role. It must run in the network namespace that holds ifname
// (interface indexes are per namespace): on a locked OS thread inside it.
//
// With pinning, a link pinned by an earlier run on the same interface in
// the same mode is reused: its program is replaced by this one atomically
// and no second program is attached. A pinned link in another mode, or for
// an interface that was recreated, is detached first (logged).
func (d *Dataplane) Attach(ifname string, role PortRole, mode Mode) (Attachment, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return Attachment{}, fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach xdp to %s: %w", ifname, err)
	}
	a := attached{Attachment: Attachment{Ifname: ifname, Ifindex: ifc.Index, Role: role, Mode: mode}}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.links == nil {
		d.links = map[string]*attached{}
	}
	if old, ok := d.links[ifname]; ok {
		return old.Attachment, fmt.Errorf("attach xdp to %s: already attached by this process", ifname)
	}

	// Register the port before the program can see its first packet, so
	// that no packet is counted on an unknown port.
	port := bpfWlPort{Role: uint32(role)}
	if err := d.objs.WlPortsV1.Put(uint32(ifc.Index), port); err != nil {
		return Attachment{}, fmt.Errorf("register port %s (ifindex %d): %w", ifname, ifc.Index, err)
	}
	if d.opts.PinDir != "" {
		l, reason, err := d.reusePinned(ifname, ifc.Index, mode)
		if err != nil {
			return Attachment{}, err
		}
		if l != nil {
			a.l, a.Reused = l, true
		} else if reason != "" {
			d.opts.Logf("dataplane: %s: not reusing pinned link: %s", ifname, reason)
		}
	}
	if a.l == nil {
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.WlXdp, Interface: ifc.Index, Flags: mode.flags()})
		if err != nil {
			return Attachment{}, fmt.Errorf("attach xdp to %s in %s mode: %w%s", ifname, mode, err, attachHint(err, ifname))
		}
		a.l = l
		if d.opts.PinDir != "" {
			if err := l.Pin(linkPin(d.opts.PinDir, ifname)); err != nil {
				l.Close()
				return Attachment{}, fmt.Errorf("pin xdp link of %s: %w", ifname, err)
			}
		}
	}
	if info, err := a.l.Info(); err == nil {
		a.LinkID = uint32(info.ID)
	}
	d.links[ifname] = &a
	d.opts.Logf("dataplane: xdp attached to %s (ifindex %d, %s, %s mode, reused=%v)", ifname, ifc.Index, role, mode, a.Reused)
	return a.Attachment, nil
}

// reusePinned returns the pinned link of ifname with our program swapped in,
// or nil and the reason it could not be reused (after removing it).
func (d *Dataplane) reusePinned(ifname string, ifindex int, mode Mode) (link.Link, string, error) {
	path := linkPin(d.opts.PinDir, ifname)
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load pinned link %s: %w", path, err)
	}
	reason := ""
	info, err := l.Info()
	switch {
	case err != nil:
		reason = fmt.Sprintf("link info: %v", err)
	case info.XDP() == nil:
		reason = fmt.Sprintf("pinned link is not an XDP link (%v)", info.Type)
	case int(info.XDP().Ifindex) != ifindex:
		reason = fmt.Sprintf("pinned link is on ifindex %d, interface now has ifindex %d (recreated)", info.XDP().Ifindex, ifindex)
	default:
		cur, err := AttachedMode(ifindex)
		if err != nil {
			reason = err.Error()
		} else if cur != mode {
			reason = fmt.Sprintf("pinned link is in %s mode, configuration asks for %s", cur, mode)
		}
	}
	if reason == "" {
		if err := l.Update(d.objs.WlXdp); err != nil {
			l.Close()
			return nil, "", fmt.Errorf("replace program of pinned link %s: %w", path, err)
		}
		return l, "", nil
	}
	if err := l.Unpin(); err != nil {
		l.Close()
		return nil, "", fmt.Errorf("unpin stale link %s: %w", path, err)
	}
	l.Close() // last reference: detaches
	return nil, reason, nil
}

// AttachedMode asks the kernel which XDP mode ifindex has a program in.
func AttachedMode(ifindex int) (Mode, error) {
	nl, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "", fmt.Errorf("query xdp state of ifindex %d: %w", ifindex, err)
	}
	x := nl.Attrs().Xdp
	if x == nil || !x.Attached {
		return "", fmt.Errorf("ifindex %d has no XDP program attached", ifindex)
	}
	return modeFromNetlink(x.AttachMode)
}

func modeFromNetlink(m uint32) (Mode, error) {
	switch m {
	case nl.XDP_ATTACHED_SKB:
		return ModeGeneric, nil
	case nl.XDP_ATTACHED_DRV:
		return ModeNative, nil
	}
	return "", fmt.Errorf("unsupported XDP attach mode %d", m)
}

func attachHint(err error, ifname string) string {
	switch {
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return fmt.Sprintf(" (hint: %s already has an XDP program not managed here; `ip link set dev %s xdp off` removes a netlink-attached one)", ifname, ifname)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
		return " (hint: the driver may not support native XDP; choose generic mode explicitly)"
	}
	return ""
}

// Attachments lists the interfaces this process attached to.
func (d *Dataplane) Attachments() []Attachment {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Attachment, 0, len(d.links))
	for _, a := range d.links {
		out = append(out, a.Attachment)
	}
	return out
}

// Detach removes the program from ifname (and its pin). The daemon does not
// call it on shutdown: detaching is an explicit operator action.
func (d *Dataplane) Detach(ifname string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.links[ifname]
	if !ok {
		return fmt.Errorf("detach xdp from %s: not attached by this process", ifname)
	}
	delete(d.links, ifname)
	var errs []error
	if d.opts.PinDir != "" {
		if err := a.l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link of %s: %w", ifname, err))
		}
	}
	if err := a.l.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close link of %s: %w", ifname, err))
	}
	if err := d.objs.WlPortsV1.Delete(uint32(a.Ifindex)); err != nil {
		errs = append(errs, fmt.Errorf("unregister port %s: %w", ifname, err))
	}
	return errors.Join(errs...)
}

// PrunePinnedLinks detaches and unpins links of interfaces that are not in
// keep: a port renamed or removed from the configuration must not stay
// behind with a program on it.
func (d *Dataplane) PrunePinnedLinks(keep []string) ([]string, error) {
	if d.opts.PinDir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(d.opts.PinDir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory %s: %w", d.opts.PinDir, err)
	}
	want := map[string]bool{}
	for _, k := range keep {
		want[k] = true
	}
	var pruned []string
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "link_xdp_")
		if !ok || want[name] {
			continue
		}
		// Removing the last reference to a link detaches its program.
		if err := os.Remove(filepath.Join(d.opts.PinDir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("unpin stale link of %s: %w", name, err))
			continue
		}
		pruned = append(pruned, name)
		d.opts.Logf("dataplane: detached stale pinned link of %s (not configured any more)", name)
	}
	return pruned, errors.Join(errs...)
}
