package lab

import (
	"context"
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Status is what Lab.Status found. Problems lists everything that is not
// as Up left it; an empty list means the lab looks healthy.
type Status struct {
	ID         string
	Namespaces []NamespaceStatus
	Links      []LinkStatus
	Processes  []ProcessStatus
	Problems   []string
}

// NamespaceStatus says whether one lab namespace exists.
type NamespaceStatus struct {
	Name    string
	Present bool
}

// LinkStatus is the state of one lab interface.
type LinkStatus struct {
	NS, Iface string
	Up        bool   // administratively up and operationally up (or unknown)
	State     string // operstate, or the error finding the link
}

// ProcessStatus is the state of one tracked process.
type ProcessStatus struct {
	Role, Name string
	PID        int
	Alive      bool
	Log        string
}

// OK reports whether no problem was found.
func (s Status) OK() bool { return len(s.Problems) == 0 }

// links returns every interface the lab expects to be up.
func (l *Lab) links() []Port {
	var ps []Port
	for _, role := range sortedRoles(l.Hosts) {
		h := l.Hosts[role]
		ps = append(ps, Port{h.NS, h.Iface})
		sw := l.OfficeSwitch
		switch role {
		case roleRouter:
			ps = append(ps, Port{h.NS, RouterWAN})
			sw = l.InternetSwitch
		case roleBox, roleMgmt:
			continue
		case "web", "dns", "c2", "mirror":
			sw = l.InternetSwitch
		}
		ps = append(ps, Port{sw.NS, role}) // the host's port on its switch
	}
	b := l.Box
	ps = append(ps, Port{b.NS, b.Inside}, Port{b.NS, b.Outside}, b.InsidePeer,
		Port{l.OfficeSwitch.NS, l.OfficeSwitch.Bridge}, Port{l.InternetSwitch.NS, l.InternetSwitch.Bridge})
	if b.Bridge != "" {
		ps = append(ps, Port{b.NS, b.Bridge})
	}
	return ps
}

// Status checks that the lab's namespaces exist, its links are up and its
// tracked processes are alive.
func (l *Lab) Status(ctx context.Context) (Status, error) {
	s := Status{ID: l.ID}
	if l.incomplete {
		s.Problems = append(s.Problems, "state file says Up did not finish")
	}
	present := map[string]bool{}
	for _, ns := range l.Namespaces {
		ok := namespaceExists(ns)
		present[ns] = ok
		s.Namespaces = append(s.Namespaces, NamespaceStatus{Name: ns, Present: ok})
		if !ok {
			s.Problems = append(s.Problems, "namespace "+ns+" missing")
		}
	}
	handles := map[string]*netlink.Handle{}
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	for _, p := range l.links() {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		ls := LinkStatus{NS: p.NS, Iface: p.Iface}
		ls.State, ls.Up = linkState(handles, present, p)
		s.Links = append(s.Links, ls)
		if !ls.Up && present[p.NS] {
			s.Problems = append(s.Problems, fmt.Sprintf("link %s in %s not up: %s", p.Iface, p.NS, ls.State))
		}
	}
	for _, p := range l.Processes() {
		ps := ProcessStatus{Role: p.Role, Name: p.Name, PID: p.PID, Alive: p.Alive(), Log: p.Log}
		s.Processes = append(s.Processes, ps)
		if !ps.Alive {
			s.Problems = append(s.Problems, fmt.Sprintf("%v is not running (log %s)", p, p.Log))
		}
	}
	return s, nil
}

// linkState looks a link up through a (cached) handle in its namespace.
func linkState(handles map[string]*netlink.Handle, present map[string]bool, p Port) (string, bool) {
	if !present[p.NS] {
		return "namespace missing", false
	}
	h := handles[p.NS]
	if h == nil {
		fd, err := openNamespace(p.NS)
		if err != nil {
			return err.Error(), false
		}
		h, err = netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
		unix.Close(fd)
		if err != nil {
			return err.Error(), false
		}
		handles[p.NS] = h
	}
	link, err := h.LinkByName(p.Iface)
	if err != nil {
		return err.Error(), false
	}
	a := link.Attrs()
	up := a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
	return a.OperState.String(), up
}

func sortedRoles(hosts map[string]*Host) []string {
	roles := make([]string, 0, len(hosts))
	for r := range hosts {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return roles
}
