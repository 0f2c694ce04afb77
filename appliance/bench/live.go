package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/lab"
)

// benchProgs are the benchmark-only programs of bpf/bench/xdp_bench.c,
// loaded once per wire (the generator's target ifindex is a load-time
// constant).
type benchProgs struct {
	objs xbenchObjects
}

// genFlows is how many UDP source ports the generators walk through, so
// the flow table sees as many flows as with trafgen (1024..65535).
const genFlows = 65535 - 1024 + 1

func loadBenchProgs(genIfindex int) (*benchProgs, error) {
	spec, err := loadXbench()
	if err != nil {
		return nil, fmt.Errorf("parse benchmark BPF object: %w", err)
	}
	for name, v := range map[string]uint32{"gen_ifindex": uint32(genIfindex), "gen_flows": genFlows} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	p := &benchProgs{}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load benchmark BPF programs: %w", err)
	}
	return p, nil
}

func (p *benchProgs) Close() error { return p.objs.Close() }

// frames returns how many frames xdp_gen has redirected so far.
func (p *benchProgs) frames() (uint64, error) {
	var n uint64
	if err := p.objs.GenFrames.Get(&n); err != nil {
		return 0, fmt.Errorf("read gen_frames: %w", err)
	}
	return n, nil
}

// attachXDP attaches prog to every named interface of namespace ns, in
// native or generic mode, and returns the links (closing them detaches).
func attachXDP(ns string, prog *ebpf.Program, native bool, ifnames ...string) ([]link.Link, error) {
	flags, mode := link.XDPGenericMode, "generic"
	if native {
		flags, mode = link.XDPDriverMode, "native"
	}
	var links []link.Link
	err := lab.Do(ns, func() error {
		for _, n := range ifnames {
			ifc, err := net.InterfaceByName(n)
			if err != nil {
				return fmt.Errorf("attach %s: %w", prog, err)
			}
			l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: flags})
			if err != nil {
				return fmt.Errorf("attach %s to %s (%s): %w", prog, n, mode, err)
			}
			links = append(links, l)
		}
		return nil
	})
	if err != nil {
		for _, l := range links {
			l.Close()
		}
		return nil, err
	}
	return links, nil
}

// xdpMD mirrors struct xdp_md, the context BPF_PROG_TEST_RUN takes for XDP
// programs: it names the device the frame "arrived" on, which in live-frame
// mode is also the device whose namespace bpf_redirect resolves in.
type xdpMD struct {
	Data           uint32
	DataEnd        uint32
	DataMeta       uint32
	IngressIfindex uint32
	RxQueueIndex   uint32
	EgressIfindex  uint32
}

// genFrame is the 64-byte (60 without FCS) UDP frame the live generator
// sends: the same frame trafgen sends, with a zero UDP checksum so that
// xdp_gen can rewrite the source port without fixing it.
func genFrame(srcMAC, dstMAC string, src, dst netip.Addr) ([]byte, error) {
	sm, err := net.ParseMAC(srcMAC)
	if err != nil {
		return nil, err
	}
	dm, err := net.ParseMAC(dstMAC)
	if err != nil {
		return nil, err
	}
	f := make([]byte, benchFrameLen)
	copy(f[0:6], dm)
	copy(f[6:12], sm)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(benchFrameLen-14))
	ip[8] = 64
	ip[9] = 17 // UDP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:2], 1024)
	binary.BigEndian.PutUint16(udp[2:4], 9) // discard
	binary.BigEndian.PutUint16(udp[4:6], uint16(benchFrameLen-34))
	return f, nil
}

// Every BPF_PROG_TEST_RUN call in live-frame mode ends with an RCU grace
// period (the kernel tears down the call's page pool), ~25 ms here, during
// which the generator's CPU idles. Calls are sized to liveCall of sending
// so that the gaps stay a few percent of the wall time; the figures use
// CPU time per packet anyway, which the gaps do not touch.
const (
	liveCall     = 400 * time.Millisecond
	liveMinChunk = 1 << 15
	liveMaxChunk = 1 << 23
)

// liveGen sends frames out of the source's eth0 for d (or, if frames > 0,
// exactly that many) with xdp_gen in live-frame mode, from a thread inside
// the source namespace pinned to cpu.
// The frames cross the veth to in0 as xdp_frames, never as skbs; the box's
// receive path then runs as softirq on the same CPU, right after each
// batch (the test run re-enables bottom halves between batches).
func (b *benchRun) liveGen(ctx context.Context, d time.Duration, cpu, frames int) error {
	return lab.Do(b.w.Src, func() error {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin live generator to CPU %d: %w", cpu, err)
		}
		// Per thread on Linux; the thread is discarded afterwards.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, benchNice); err != nil {
			return fmt.Errorf("renice live generator: %w", err)
		}
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return fmt.Errorf("live generator: %w", err)
		}
		opts := &ebpf.RunOptions{
			Data:      b.frame,
			Repeat:    liveMinChunk,
			Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			BatchSize: 64, // the kernel default, and NAPI's budget
			Context:   xdpMD{DataEnd: uint32(len(b.frame)), IngressIfindex: uint32(ifc.Index)},
		}
		if frames > 0 {
			opts.Repeat = uint32(frames)
			if _, err := b.progs.objs.XdpGen.Run(opts); err != nil {
				return fmt.Errorf("live-frame BPF_PROG_TEST_RUN of xdp_gen: %w", err)
			}
			return nil
		}
		end := time.Now().Add(d)
		for t0 := time.Now(); t0.Before(end); t0 = time.Now() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if left := time.Until(end); left < liveCall {
				// The last call: about what is left of d.
				opts.Repeat = max(liveMinChunk, uint32(float64(opts.Repeat)*left.Seconds()/liveCall.Seconds()))
			}
			_, err := b.progs.objs.XdpGen.Run(opts)
			if el := time.Since(t0); err == nil && el > 0 {
				// Size the next call from this one's rate.
				next := float64(opts.Repeat) * liveCall.Seconds() / el.Seconds()
				opts.Repeat = uint32(min(max(next, liveMinChunk), liveMaxChunk))
			}
			if err != nil {
				if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EOPNOTSUPP) {
					return fmt.Errorf("live-frame BPF_PROG_TEST_RUN (needs Linux 5.18): %w", err)
				}
				return fmt.Errorf("live-frame BPF_PROG_TEST_RUN of xdp_gen: %w", err)
			}
		}
		return nil
	})
}
