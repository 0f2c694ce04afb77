package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/lab"
)

// nftTable is the nft bridge-family table of the NftDrop configuration.
const nftTable = "wlbench"

// benchFrameLen is the generators' frame: 64 bytes on the wire, without FCS.
const benchFrameLen = 60

// benchRun is one Wire with what is attached to it.
type benchRun struct {
	opts  Options
	w     *Wire
	dp    *dataplane.Dataplane // wl_xdp configurations
	links []link.Link          // benchmark programs attached by set
	prog  *ebpf.Program        // the XDP program of the current config, if any
	cfg   Config
	setup Setup
	progs *benchProgs
	frame []byte // the live generator's frame

	srcIdx int // ifindex of eth0 in the source namespace
}

func newBenchRun(ctx context.Context, opts Options) (_ *benchRun, err error) {
	opts.defaults()
	w, err := NewWire(ctx)
	if err != nil {
		return nil, err
	}
	b := &benchRun{opts: opts, w: w, cfg: Bare, setup: SetupDefault}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	err = lab.Do(w.Src, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		b.srcIdx = ifc.Index
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up the source's eth0: %w", err)
	}
	if b.progs, err = loadBenchProgs(b.srcIdx); err != nil {
		return nil, err
	}
	b.frame, err = genFrame(w.SrcMAC, w.DstMAC, netip.MustParseAddr(w.SrcAddr), netip.MustParseAddr(w.DstAddr))
	if err != nil {
		return nil, fmt.Errorf("build the generator's frame: %w", err)
	}
	return b, nil
}

// Close detaches everything and removes the wire.
func (b *benchRun) Close() error {
	errs := []error{b.teardown(context.Background())}
	if b.progs != nil {
		b.progs.Close()
		b.progs = nil
	}
	errs = append(errs, b.w.Close())
	return errors.Join(errs...)
}

// teardown detaches programs and removes the nft table.
func (b *benchRun) teardown(ctx context.Context) error {
	var errs []error
	for _, l := range b.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach benchmark program: %w", err))
		}
	}
	b.links = nil
	if b.dp != nil {
		// Loaded without a pin directory (see set), so closing the
		// links detaches wl_xdp at once. A pinned link would be
		// released by a deferred kernel work item after its pin is
		// removed, racing with the next attach (EBUSY).
		if err := b.dp.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach wl_xdp: %w", err))
		}
		b.dp = nil
	}
	b.prog = nil
	if err := b.waitDetached(); err != nil {
		errs = append(errs, err)
	}
	if b.cfg == NftDrop {
		if _, err := b.w.Exec(ctx, b.w.Box, "nft", "delete", "table", "bridge", nftTable); err != nil {
			errs = append(errs, err)
		}
	}
	b.cfg = Bare
	return errors.Join(errs...)
}

// waitDetached waits until no XDP program is left on the box's ports.
func (b *benchRun) waitDetached() error {
	h := b.w.nl[b.w.Box]
	if h == nil {
		return nil // wire closed
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		busy := ""
		for _, dev := range []string{"in0", "out0"} {
			l, err := h.LinkByName(dev)
			if err != nil {
				return fmt.Errorf("check XDP state of %s: %w", dev, err)
			}
			if x := l.Attrs().Xdp; x != nil && x.Attached {
				busy = dev
			}
		}
		if busy == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still has an XDP program 3s after detaching", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// offloadKnob is one ethtool feature of one device.
type offloadKnob struct{ ns, dev, feature string }

// offloadsOf returns every knob a setup touches with its value.
func (b *benchRun) offloadsOf(s Setup) map[offloadKnob]bool {
	srcTSO, dstTSO := offloadKnob{b.w.Src, "eth0", "tso"}, offloadKnob{b.w.Dst, "eth0", "tso"}
	inGRO, outGRO := offloadKnob{b.w.Box, "in0", "gro"}, offloadKnob{b.w.Box, "out0", "gro"}
	m := map[offloadKnob]bool{srcTSO: true, dstTSO: true, inGRO: false, outGRO: false} // veth defaults
	switch s {
	case SetupWire:
		m[srcTSO], m[dstTSO], m[inGRO], m[outGRO] = false, false, true, true
	case SetupGRO:
		m[inGRO] = true
	}
	return m
}

// offloads puts the ports' offloads into setup s, switching only what
// differs from the current setup.
func (b *benchRun) offloads(ctx context.Context, s Setup) error {
	have := b.offloadsOf(b.setup)
	for k, v := range b.offloadsOf(s) {
		if have[k] == v {
			continue
		}
		if err := b.w.setOffload(ctx, k.ns, k.dev, k.feature, v); err != nil {
			return err
		}
	}
	b.setup = s
	return nil
}

// set puts the box into configuration c with offloads s.
func (b *benchRun) set(ctx context.Context, c Config, s Setup) error {
	if err := b.teardown(ctx); err != nil {
		return err
	}
	// Offloads change with no program attached: native XDP on a veth
	// changes its own and its peer's features while attached.
	if err := b.offloads(ctx, s); err != nil {
		return err
	}
	b.cfg = c
	switch c {
	case Bare:
	case NftDrop:
		// The same set type and hook the enforcement layer can use
		// (bridge family, prerouting, priority -200: before the
		// bridge's forwarding decision, the earliest bridge hook).
		rules := fmt.Sprintf(`table bridge %s {
	set blocked { type ipv4_addr; flags interval; elements = { %s/32 } }
	chain pre { type filter hook prerouting priority -200; policy accept; ip saddr @blocked counter drop; }
}`, nftTable, b.w.SrcAddr)
		f := filepath.Join(os.TempDir(), b.w.ID+".nft")
		if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
			return fmt.Errorf("write nft rules: %w", err)
		}
		defer os.Remove(f)
		if _, err := b.w.Exec(ctx, b.w.Box, "nft", "-f", f); err != nil {
			return err
		}
	case Pass, PassLinear, PassNative:
		prog, native := b.progs.objs.XdpPassFrags, c == PassNative
		if c == PassLinear {
			prog = b.progs.objs.XdpPass
		}
		links, err := attachXDP(b.w.Box, prog, native, "in0", "out0")
		if err != nil {
			return err
		}
		b.links, b.prog = links, prog
	case Generic, Native, XDPDrop, XDPDropNative:
		mode := dataplane.ModeGeneric
		if c == Native || c == XDPDropNative {
			mode = dataplane.ModeNative
		}
		// No pin directory: the benchmark owns the programs for one
		// measurement only, and pinning changes nothing on the packet
		// path.
		d, err := dataplane.Load(dataplane.Options{})
		if err != nil {
			return err
		}
		b.dp, b.prog = d, d.XDPProgram()
		err = lab.Do(b.w.Box, func() error {
			for _, p := range []struct {
				n string
				r dataplane.PortRole
			}{{"in0", dataplane.RoleInside}, {"out0", dataplane.RoleOutside}} {
				if _, err := d.Attach(p.n, p.r, mode); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if c == XDPDrop || c == XDPDropNative {
			if err := d.Lists().Add(dataplane.BlockSrc, netip.MustParsePrefix(b.w.SrcAddr+"/32")); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown configuration %q", c)
	}
	if c == NftDrop || c == XDPDrop || c == XDPDropNative {
		return nil // the source is blocked; the measurement's counters show the drops
	}
	// Check that the wire forwards before measuring (native mode on veth
	// changes the peer's offloads and takes a moment).
	if err := b.w.waitForward(ctx); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}
