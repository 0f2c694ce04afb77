package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/wardline/wardline/dataplane"
)

func init() {
	register(command{name: "dp", usage: "fast-path state in bpffs: attach, detach, stats, block, unblock, allow, list", run: subcommands("dp", map[string]func(context.Context, []string) error{
		"attach": dpAttach,
		"detach": dpDetach,
		"stats":  dpStats,
		"block":  func(ctx context.Context, a []string) error { return dpList(ctx, "block", a) },
		"unblock": func(ctx context.Context, a []string) error {
			return dpList(ctx, "unblock", a)
		},
		"allow": func(ctx context.Context, a []string) error { return dpList(ctx, "allow", a) },
		"list":  func(ctx context.Context, a []string) error { return dpList(ctx, "list", a) },
	})})
}

const defaultPinDir = "/sys/fs/bpf/wardline"

// dpAttach loads the fast path and attaches it without the daemon (for
// benchmarks and debugging). The pins keep it attached after exit.
func dpAttach(ctx context.Context, args []string) error {
	fs := flags("dp attach")
	pinDir := fs.String("pin-dir", defaultPinDir, "pin directory on a bpffs (mounted if needed)")
	bpffs := fs.String("bpffs", "/sys/fs/bpf", "bpffs mountpoint")
	mode := fs.String("mode", "", "XDP mode: generic or native (required)")
	inside := fs.String("inside", "", "inside port")
	outside := fs.String("outside", "", "outside port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := dataplane.ParseMode(*mode)
	if err != nil {
		return err
	}
	if err := dataplane.MountBPFFS(*bpffs, *pinDir); err != nil {
		return err
	}
	d, err := dataplane.Load(dataplane.Options{PinDir: *pinDir, ReplaceIncompatible: true})
	if err != nil {
		return err
	}
	defer d.Close()
	for _, p := range []struct {
		name string
		role dataplane.PortRole
	}{{*inside, dataplane.RoleInside}, {*outside, dataplane.RoleOutside}} {
		if p.name == "" {
			continue
		}
		a, err := d.Attach(p.name, p.role, m)
		if err != nil {
			return err
		}
		fmt.Printf("attached to %s (ifindex %d, %s, %s mode, reused pinned link: %v)\n", a.Ifname, a.Ifindex, a.Role, a.Mode, a.Reused)
	}
	return nil
}

func dpDetach(ctx context.Context, args []string) error {
	fs := flags("dp detach")
	pinDir := fs.String("pin-dir", defaultPinDir, "pin directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return dataplane.Unpin(*pinDir)
}

func dpStats(ctx context.Context, args []string) error {
	fs := flags("dp stats")
	pinDir := fs.String("pin-dir", defaultPinDir, "pin directory")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := dataplane.ReadPinnedStats(*pinDir)
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]uint64{}
		for i := 0; i < dataplane.NumStats; i++ {
			out[dataplane.Stat(i).Name()] = st.Total[i]
		}
		out["flow_evictions"] = st.FlowEvictions
		out["flows_live"] = st.Sweep.Live
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	for i := 0; i < dataplane.NumStats; i++ {
		fmt.Fprintf(w, "%d\t %s\t\n", st.Total[i], dataplane.Stat(i).Name())
	}
	fmt.Fprintf(w, "%d\t flow_evictions\t\n%d\t flows_live\t\n", st.FlowEvictions, st.Sweep.Live)
	return w.Flush()
}

func dpList(ctx context.Context, verb string, args []string) error {
	fs := flags("dp " + verb)
	pinDir := fs.String("pin-dir", defaultPinDir, "pin directory")
	match := fs.String("match", "src", "for block/unblock: src or dst")
	listName := fs.String("list", "", "for list: block-src, block-dst or allow (default all)")
	ttl := fs.Duration("ttl", 0, "for block: drop only for this long (0 = until unblocked); re-blocking sets the new expiry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ttl < 0 || (*ttl > 0 && verb != "block") {
		return fmt.Errorf("-ttl %v: only a positive duration, only for block", *ttl)
	}
	l, err := dataplane.OpenLists(*pinDir)
	if err != nil {
		return err
	}
	defer l.Close()
	if verb == "list" {
		lists := []dataplane.List{dataplane.BlockSrc, dataplane.BlockDst, dataplane.Allow}
		if *listName != "" {
			x, err := dataplane.ParseList(*listName)
			if err != nil {
				return err
			}
			lists = []dataplane.List{x}
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "LIST\tPREFIX\tPACKETS\tBYTES\tEXPIRES")
		now := time.Now()
		for _, x := range lists {
			es, err := l.Entries(x)
			if err != nil {
				return err
			}
			for _, e := range es {
				exp := "never"
				switch {
				case e.Expires.IsZero():
				case e.Expires.After(now):
					exp = fmt.Sprintf("%s (in %v)", e.Expires.Format(time.RFC3339), e.Expires.Sub(now).Round(time.Second))
				default:
					exp = fmt.Sprintf("%s (expired)", e.Expires.Format(time.RFC3339))
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", x, e.Prefix, e.Packets, e.Bytes, exp)
			}
		}
		return w.Flush()
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("wardline dp %s: give at least one prefix (like 198.51.100.7/32)", verb)
	}
	list := dataplane.Allow
	if verb != "allow" {
		list = dataplane.BlockSrc
		switch *match {
		case "src":
		case "dst":
			list = dataplane.BlockDst
		default:
			return fmt.Errorf("-match %q: want src or dst", *match)
		}
	}
	for _, a := range fs.Args() {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr, aerr := netip.ParseAddr(a)
			if aerr != nil {
				return fmt.Errorf("%q is neither a prefix nor an address", a)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		switch {
		case verb == "unblock":
			err = l.Remove(list, p)
		case verb == "block":
			var expires time.Time
			if *ttl > 0 {
				expires = time.Now().Add(*ttl)
			}
			err = l.Set(list, p, expires)
		default:
			err = l.Add(list, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
