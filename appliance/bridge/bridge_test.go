package bridge

import (
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wardline/wardline/appliance/config"
)

// inNewNetns runs fn on a thread inside a fresh, unnamed network namespace
// that disappears with the thread (which is never unlocked, so Go discards
// it when the goroutine ends).
func inNewNetns(t *testing.T, fn func() error) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (CI runs as root)")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func addVeth(t *testing.T, name, peer string) error {
	return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer})
}

func TestSetupIdempotentAndCorrect(t *testing.T) {
	c := config.Bridge{Name: "br0", Inside: "in0", Outside: "out0", Create: true}
	inNewNetns(t, func() error {
		if err := addVeth(t, "in0", "in0p"); err != nil {
			return err
		}
		if err := addVeth(t, "out0", "out0p"); err != nil {
			return err
		}
		changes, err := Setup(c)
		if err != nil {
			return err
		}
		if len(changes) == 0 || !strings.Contains(strings.Join(changes, ","), "created bridge br0") {
			t.Errorf("first Setup changes %q, want the bridge created", changes)
		}
		again, err := Setup(c)
		if err != nil {
			return err
		}
		if len(again) != 0 {
			t.Errorf("second Setup changed %q, want nothing", again)
		}
		br, _ := netlink.LinkByName("br0")
		for _, p := range []string{"in0", "out0"} {
			l, _ := netlink.LinkByName(p)
			if l.Attrs().MasterIndex != br.Attrs().Index {
				t.Errorf("%s not in br0", p)
			}
			if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + p + "/disable_ipv6"); strings.TrimSpace(string(b)) != "1" {
				t.Errorf("IPv6 still enabled on %s", p)
			}
		}
		// Someone turns STP on: Setup turns it off again; Check sees it.
		if err := setSTP(br.Attrs().Index, 1); err != nil {
			return err
		}
		if diff, err := Check(c); err != nil || !strings.Contains(diff, "STP is on") {
			t.Errorf("Check = %q, %v; want STP reported", diff, err)
		}
		if ch, err := Setup(c); err != nil || len(ch) != 1 || !strings.Contains(ch[0], "STP") {
			t.Errorf("Setup after STP on: %q %v", ch, err)
		}
		if s, _ := stpState(br.Attrs().Index); s != 0 {
			t.Errorf("stp state %d after Setup", s)
		}
		// A third port in the bridge is refused.
		if err := addVeth(t, "x0", "x0p"); err != nil {
			return err
		}
		x, _ := netlink.LinkByName("x0")
		netlink.LinkSetMaster(x, br)
		if _, err := Setup(c); err == nil || !strings.Contains(err.Error(), "unexpected port x0") {
			t.Errorf("Setup with an extra port: %v", err)
		}
		return nil
	})
}

func TestSetupWithoutCreate(t *testing.T) {
	inNewNetns(t, func() error {
		_, err := Setup(config.Bridge{Name: "br0", Inside: "a", Outside: "b"})
		if err == nil || !strings.Contains(err.Error(), "bridge.create is false") {
			t.Errorf("err = %v", err)
		}
		if err := addVeth(t, "br0", "br0p"); err != nil {
			return err
		}
		_, err = Setup(config.Bridge{Name: "br0", Inside: "a", Outside: "b", Create: true})
		if err == nil || !strings.Contains(err.Error(), "not a bridge") {
			t.Errorf("err = %v", err)
		}
		return nil
	})
}

func TestSetupManagement(t *testing.T) {
	inNewNetns(t, func() error {
		if err := addVeth(t, "mgmt0", "mgmtp"); err != nil {
			return err
		}
		m := config.Management{Interface: "mgmt0", Addresses: []netip.Prefix{
			netip.MustParsePrefix("198.18.254.1/24"), netip.MustParsePrefix("2001:db8:254::1/64")}}
		if ch, err := SetupManagement(m); err != nil || len(ch) != 3 {
			t.Errorf("first: %q %v", ch, err)
		}
		if ch, err := SetupManagement(m); err != nil || len(ch) != 0 {
			t.Errorf("second: %q %v, want no change", ch, err)
		}
		return nil
	})
}
