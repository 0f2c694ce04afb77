package dataplane

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestPinnedReattachAndPrune: a second load re-attaches to the pinned links
// (same link IDs), and links of interfaces no longer configured are
// detached.
func TestPinnedReattachAndPrune(t *testing.T) {
	requireRoot(t)
	bpffs := t.TempDir()
	if err := unix.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bpffs, unix.MNT_DETACH)
	pin := bpffs + "/wl"
	if err := MountBPFFS(bpffs, pin); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		ns, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		errc <- func() error {
			for _, n := range []string{"a0", "b0", "c0"} {
				if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n}, PeerName: n + "p"}); err != nil {
					return err
				}
				l, _ := netlink.LinkByName(n)
				netlink.LinkSetUp(l)
			}
			d1, err := Load(Options{PinDir: pin})
			if err != nil {
				return err
			}
			ids := map[string]uint32{}
			for _, n := range []string{"a0", "b0", "c0"} {
				a, err := d1.Attach(n, RoleInside, ModeGeneric)
				if err != nil {
					return err
				}
				ids[n] = a.LinkID
			}
			d1.Close()

			d2, err := Load(Options{PinDir: pin})
			if err != nil {
				return err
			}
			defer d2.Close()
			pruned, err := d2.PrunePinnedLinks([]string{"a0", "b0"})
			if err != nil {
				return err
			}
			if len(pruned) != 1 || pruned[0] != "c0" {
				t.Errorf("pruned %v, want [c0]", pruned)
			}
			for _, n := range []string{"a0", "b0"} {
				a, err := d2.Attach(n, RoleInside, ModeGeneric)
				if err != nil {
					return err
				}
				if !a.Reused || a.LinkID != ids[n] {
					t.Errorf("%s: reused %v link %d, want the pinned link %d", n, a.Reused, a.LinkID, ids[n])
				}
			}
			l, _ := netlink.LinkByName("c0")
			if x := l.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("c0 still has XDP program %d after pruning", x.ProgId)
			}
			// A different mode is not silently kept: the link is replaced.
			d2.Close()
			d3, err := Load(Options{PinDir: pin})
			if err != nil {
				return err
			}
			defer d3.Close()
			a, err := d3.Attach("a0", RoleInside, ModeNative)
			if err != nil {
				return err
			}
			if a.Reused {
				t.Error("a generic-mode link was reused for native mode")
			}
			if m, err := AttachedMode(a.Ifindex); err != nil || m != ModeNative {
				t.Errorf("a0 mode %q %v, want native", m, err)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
