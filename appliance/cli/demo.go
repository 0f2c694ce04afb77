package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wardline/wardline/dataplane"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

// labDemo is `make demo`: a lab with wardlined inline, traffic from the
// office, a live scan alert, a blocking policy rolled out from audit
// (would-block only) to canary (the scanner in its subset is blocked in
// XDP), the flows the box saw, and the fail-open promise (kill the
// daemon: traffic flows, the block holds).
func labDemo(ctx context.Context, args []string) error {
	fs := flags("lab demo")
	keep := fs.Bool("keep", false, "leave the lab and the daemon running at the end")
	mode := fs.String("mode", "generic", "XDP mode: generic or native")
	wardlined := fs.String("wardlined", "", "wardlined binary (default: next to this binary)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and loads XDP programs: run it as root (sudo make demo)")
	}
	if _, err := dataplane.ParseMode(*mode); err != nil {
		return err
	}
	if *wardlined == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*wardlined = filepath.Join(filepath.Dir(self), "wardlined")
	}
	if _, err := os.Stat(*wardlined); err != nil {
		return fmt.Errorf("wardlined binary: %w (run `make build` first)", err)
	}

	bold, reset := "", ""
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		bold, reset = "\033[1m", "\033[0m"
	}
	step := func(format string, args ...any) { fmt.Printf("\n"+bold+"== "+format+reset+"\n", args...) }
	step("building the lab: office clients, resolver and servers | box | router | internet hosts")
	l, err := lab.Up(ctx, lab.Config{NoBoxBridge: true})
	if err != nil {
		return err
	}
	cleanup := func() {
		if *keep {
			return
		}
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "lab down:", err)
		}
		unmountIfBPFFS(demoBPFFS(l.ID))
	}
	defer cleanup()
	printLab(l)

	bpffs := demoBPFFS(l.ID)
	if err := dataplane.MountBPFFS(bpffs, filepath.Join(bpffs, "wardline")); err != nil {
		return err
	}
	pinDir := filepath.Join(bpffs, "wardline")
	listen := netip.AddrPortFrom(l.Box.MgmtAddr, 9100)
	cfgPath := filepath.Join(l.Dir, "wardlined.json")
	stateDir := filepath.Join(l.Dir, "wardline-state")
	cfg := fmt.Sprintf(`{
  "bridge": {"name": "br0", "inside": %q, "outside": %q},
  "management": {"interface": %q, "listen": %q},
  "dataplane": {
    "xdp_mode": %q, "bpffs": %q, "pin_dir": %q,
    "idle_timeout": "3s", "close_timeout": "1s", "sweep_interval": "500ms",
    "allowlist": [%q, %q]
  },
  "detect": {"home_nets": ["198.18.0.0/24", "2001:db8:18::/64"]},
  "enforce": {
    "state_dir": %q,
    "groups": {"canary-hosts": [%q]},
    "policies": [{"id": "block-scanners", "match": {"types": ["port_scan"], "min_risk": 50},
      "action": "block", "ttl": "10m", "canary": {"group": "canary-hosts"}}]
  },
  "log": {"flows": true}
}
`, l.Box.Inside, l.Box.Outside, l.Box.Mgmt, listen, *mode, bpffs, pinDir, l.Host("router").IPv4.String()+"/32", l.Resolver.String()+"/32",
		stateDir, l.Host("client3").IPv4.String()+"/32")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	step("starting wardlined in %s (config %s)", l.Box.NS, cfgPath)
	fmt.Print(cfg)
	daemon, err := l.Host("box").Start(ctx, *wardlined, "-config", cfgPath)
	if err != nil {
		return err
	}
	stopTail := tailFile(daemon.Log, "  wardlined | ")
	defer stopTail()
	client := mgmt.NewClient(listen.String())
	client.HTTP = l.Host("mgmt").HTTPClient()
	if err := waitHealthy(ctx, client, 20*time.Second); err != nil {
		return err
	}
	fmt.Println("  management API healthy on", listen)

	c1, c2, c3 := l.Host("client1"), l.Host("client2"), l.Host("client3")
	web, c2host := l.Host("web"), l.Host("c2")
	run := func(h *lab.Host, args ...string) {
		fmt.Printf("  %s$ %s\n", h.Role, strings.Join(args, " "))
		out, err := h.Run(ctx, args[0], args[1:]...)
		if err != nil {
			fmt.Printf("    -> failed (%s): %s\n", firstLine(strings.TrimPrefix(err.Error(), "run ")), summaryLine(strings.TrimSpace(out)))
			return
		}
		if s := strings.TrimSpace(out); s != "" {
			fmt.Printf("    -> %s\n", summaryLine(s))
		}
	}
	step("office traffic crosses the box")
	run(c1, "dig", "+short", "@"+l.Resolver.String(), lab.WebName)
	run(c1, "curl", "-sSk", "-o", "/dev/null", "-w", "HTTPS %{http_code}, %{size_download} bytes", "--resolve", lab.WebName+":443:"+web.IPv4.String(), "https://"+lab.WebName+"/")
	run(c2, "curl", "-sS", "-o", "/dev/null", "-w", "HTTP %{http_code}, %{size_download} bytes", fmt.Sprintf("http://%s/bytes?n=5000000", web.IPv4))
	run(c1, "curl", "-sS", "-6", "-o", "/dev/null", "-w", "HTTP over IPv6 %{http_code}", fmt.Sprintf("http://[%s]/", web.IPv6))
	run(c3, "ping", "-c", "2", "-i", "0.2", c2host.IPv4.String())

	tok, err := os.ReadFile(filepath.Join(stateDir, "api-token"))
	if err != nil {
		return fmt.Errorf("enforcement API token: %w", err)
	}
	client.Token, client.User = strings.TrimSpace(string(tok)), "demo"
	scan := func(h *lab.Host) error {
		fmt.Printf("  %s$ (connect scan of 100 ports of %s)\n", h.Role, web.IPv4)
		h.ConnectScan(web.IPv4, 2000, 2100, 300*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		var alerts []struct {
			Type, Subtype, Signature string
			Attacker                 netip.Addr
			Risk                     float64               `json:"risk_score"`
			TTD                      time.Duration         `json:"time_to_detect"`
			Reasons                  []detect.Contribution `json:"risk_contributions"`
			MITRE                    detect.MITRE
		}
		if err := client.Get(ctx, "/api/v1/alerts", &alerts); err != nil {
			return err
		}
		for _, a := range alerts {
			if a.Attacker != h.IPv4 {
				continue
			}
			fmt.Printf("  ALERT risk %.0f %s/%s (%s %s), detected %v after the decisive packet:\n    %s\n", a.Risk, a.Type, a.Subtype,
				a.MITRE.TechniqueID, a.MITRE.TechniqueName, a.TTD.Round(time.Millisecond), a.Signature)
			for _, r := range a.Reasons {
				fmt.Printf("      +%.0f %s: %s\n", r.Points, r.Feature, r.Why)
			}
		}
		return nil
	}
	policies := func() {
		ps, err := client.Policies(ctx)
		if err == nil {
			printPolicies(os.Stdout, ps)
		}
	}

	step("policy block-scanners is in stage audit: client2 scans; the engine sees it live, the policy only logs \"would block\"")
	if err := scan(c2); err != nil {
		return err
	}
	if wb, err := client.WouldBlock(ctx, 10); err == nil {
		for _, w := range wb {
			fmt.Printf("  would-block: %s %s (%s, %s)\n", w.Action, w.Target, w.Policy, w.Why)
		}
	}
	run(c2, "ping", "-c", "2", "-i", "0.2", "-W", "1", web.IPv4.String())

	step("promote the policy to canary (its subset: client3); client3 scans and is blocked in XDP")
	if _, err := client.Promote(ctx, "block-scanners", "canary", "demo: first canary"); err != nil {
		return err
	}
	policies()
	if err := scan(c3); err != nil {
		return err
	}
	blocked := netip.PrefixFrom(c3.IPv4, 32)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ds, err := client.Decisions(ctx); err == nil && len(ds) > 0 {
			printDecisions(os.Stdout, ds)
			break
		}
	}
	run(c3, "ping", "-c", "3", "-i", "0.2", "-W", "1", web.IPv4.String())
	run(c1, "ping", "-c", "2", "-i", "0.2", web.IPv4.String())
	lists, err := dataplane.OpenLists(pinDir)
	if err != nil {
		return err
	}
	defer lists.Close()
	if e, err := lists.Get(dataplane.BlockSrc, blocked); err == nil {
		fmt.Printf("  block-src %s: %d packets dropped in XDP, expires %s\n", e.Prefix, e.Packets, e.Expires.Local().Format(time.TimeOnly))
	}
	if recs, err := client.AuditLog(ctx, 5); err == nil {
		fmt.Println("  audit log (hash-chained, append-only):")
		for _, r := range recs {
			fmt.Printf("    %d %s %s %s %s: %s\n", r.Seq, r.Who, r.What, r.Policy, r.Target, firstLine(r.Why))
		}
	}

	step("flows the box exported (waiting for the idle timeout)")
	time.Sleep(4 * time.Second)
	var flows []mgmt.Flow
	if err := client.Get(ctx, "/api/v1/flows?limit=30", &flows); err != nil {
		return err
	}
	printFlows(os.Stdout, flows, false)
	var st struct {
		Counters    map[string]uint64 `json:"counters"`
		Attachments []struct {
			Interface, Role, Mode string
		} `json:"attachments"`
	}
	if err := client.Get(ctx, "/api/v1/status", &st); err != nil {
		return err
	}
	fmt.Printf("\n  attached: ")
	for _, a := range st.Attachments {
		fmt.Printf("%s (%s, %s)  ", a.Interface, a.Role, a.Mode)
	}
	fmt.Printf("\n  counters: rx %d packets, passed %d, dropped %d, flow records %d, snippets %d, ring failures %d, parse errors %d\n",
		st.Counters["rx_packets"], st.Counters["pass_packets"], st.Counters["drop_packets"], st.Counters["flow_records"],
		st.Counters["snippets"], st.Counters["flow_record_reserve_failures"]+st.Counters["snippet_output_failures"],
		st.Counters["parse_errors_eth"]+st.Counters["parse_errors_vlan"]+st.Counters["parse_errors_ipv4"]+st.Counters["parse_errors_ipv6"]+st.Counters["parse_errors_ipv6_ext"]+st.Counters["parse_errors_l4"])

	step("fail-open: kill -9 wardlined")
	if err := syscall.Kill(daemon.PID, syscall.SIGKILL); err != nil {
		return err
	}
	daemon.Wait()
	run(c1, "ping", "-c", "2", "-i", "0.2", web.IPv4.String())
	run(c3, "ping", "-c", "2", "-i", "0.2", "-W", "1", web.IPv4.String())
	if e, err := lists.Get(dataplane.BlockSrc, blocked); err == nil {
		fmt.Printf("  traffic still flows and the block still holds without the daemon (%d drops so far)\n", e.Packets)
	}

	if *keep {
		step("lab %s left running", l.ID)
		fmt.Printf("  restart the daemon:  ip netns exec %s %s -config %s\n", l.Box.NS, *wardlined, cfgPath)
		fmt.Printf("  run a command:       ip netns exec %s curl http://%s/\n", c1.NS, web.IPv4)
		fmt.Printf("  pinned state:        %s dp stats -pin-dir %s\n", os.Args[0], pinDir)
		fmt.Printf("  tear down:           %s lab down %s\n", os.Args[0], l.ID)
		return nil
	}
	step("tearing down")
	return nil
}

// summaryLine picks ping's statistics line, or the first line.
func summaryLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "packets transmitted") {
			return l
		}
	}
	return firstLine(s)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func waitHealthy(ctx context.Context, c *mgmt.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		h, err := c.Health(ctx)
		if err == nil && h.Healthy {
			return nil
		}
		last = err
		if err == nil {
			last = errors.New(h.FirstError)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("wardlined not healthy after %v: %v", timeout, last)
}

// printFlows prints flow records as a table. Unless all is set, link-local
// and multicast control traffic (IPv6 ND, MLD) is counted, not listed.
func printFlows(w io.Writer, flows []mgmt.Flow, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PROTO\tSOURCE\tDESTINATION\tIN\tPKTS >\tBYTES >\tPKTS <\tBYTES <\tEND")
	hidden := 0
	for _, f := range flows {
		src, _ := netip.ParseAddr(f.SrcIP)
		dst, _ := netip.ParseAddr(f.DestIP)
		if !all && (src.IsLinkLocalUnicast() || dst.IsMulticast() || dst.IsLinkLocalUnicast()) {
			hidden++
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", f.Proto,
			netip.AddrPortFrom(src, f.SrcPort), netip.AddrPortFrom(dst, f.DestPort), f.InIface,
			f.PktsToServer, f.BytesToServer, f.PktsToClient, f.BytesToClient, f.Reason)
	}
	tw.Flush()
	if hidden > 0 {
		fmt.Fprintf(w, "  (+%d link-local/multicast control flows: IPv6 neighbour discovery, MLD)\n", hidden)
	}
}

// tailFile copies lines appended to path to stdout with a prefix until the
// returned function is called.
func tailFile(path, prefix string) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var f *os.File
		for f == nil {
			var err error
			if f, err = os.Open(path); err != nil {
				select {
				case <-done:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		defer f.Close()
		r := bufio.NewReader(f)
		var partial string
		for {
			line, err := r.ReadString('\n')
			partial += line
			if err == nil {
				fmt.Print(prefix + partial)
				partial = ""
				continue
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() {
		time.Sleep(100 * time.Millisecond)
		close(done)
		<-finished
	}
}
