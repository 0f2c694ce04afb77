package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/wardline/wardline/lab"
)

func init() {
	register(command{name: "lab", usage: "network-namespace lab with the appliance inline: up, down, status, demo", run: subcommands("lab", map[string]func(context.Context, []string) error{
		"up":     labUp,
		"down":   labDown,
		"status": labStatus,
		"demo":   labDemo,
	})})
}

// demoBPFFS is where `lab demo` mounts the bpffs for a lab's daemon: outside
// the lab's state directory (Down removes that) and in the root mount
// namespace, so the pins outlive the daemon (`ip netns exec` gives each
// process a private mount namespace).
func demoBPFFS(id string) string { return filepath.Join("/run/wardline", "bpffs-"+id) }

func labUp(ctx context.Context, args []string) error {
	fs := flags("lab up")
	clients := fs.Int("clients", 3, "number of office clients")
	id := fs.String("id", "", "lab ID (default: wl + 4 random hex digits)")
	noBridge := fs.Bool("no-bridge", false, "do not create br0 in the box (wardlined will)")
	noServices := fs.Bool("no-services", false, "topology only")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lab.Up(ctx, lab.Config{ID: *id, Clients: *clients, NoBoxBridge: *noBridge, NoServices: *noServices, StateDir: *stateDir})
	if err != nil {
		return err
	}
	printLab(l)
	fmt.Printf("\ntear down with: wardline lab down %s\n", l.ID)
	return nil
}

func printLab(l *lab.Lab) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "lab %s\n\nROLE\tNAMESPACE\tIPv4\tIPv6\n", l.ID)
	for _, role := range sortedRoles(l) {
		h := l.Hosts[role]
		v6 := ""
		if h.IPv6.IsValid() {
			v6 = h.IPv6.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", role, h.NS, h.IPv4, v6)
	}
	w.Flush()
	b := l.Box
	fmt.Printf("\nbox %s: %s (inside) and %s (outside) in bridge %q, management %s %s\n", b.NS, b.Inside, b.Outside, b.Bridge, b.Mgmt, b.MgmtAddr)
}

func sortedRoles(l *lab.Lab) []string {
	var out []string
	for _, h := range l.Clients() {
		out = append(out, h.Role)
	}
	for _, r := range []string{"resolver", "server1", "server2", "router", "web", "dns", "c2", "mirror", "box", "mgmt"} {
		if l.Hosts[r] != nil {
			out = append(out, r)
		}
	}
	return out
}

func labDown(ctx context.Context, args []string) error {
	fs := flags("lab down")
	all := fs.Bool("all", false, "tear down every lab in the state directory")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids := fs.Args()
	if *all {
		var err error
		if ids, err = lab.List(*stateDir); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return errors.New("wardline lab down: name a lab ID, or use -all")
	}
	var errs []error
	for _, id := range ids {
		l, err := lab.Load(*stateDir, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.Down(); err != nil {
			errs = append(errs, err)
		}
		if err := unmountIfBPFFS(demoBPFFS(id)); err != nil {
			errs = append(errs, err)
		}
		fmt.Printf("lab %s is down\n", id)
	}
	return errors.Join(errs...)
}

func unmountIfBPFFS(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return os.Remove(dir)
}

func labStatus(ctx context.Context, args []string) error {
	fs := flags("lab status")
	stateDir := fs.String("state-dir", lab.DefaultStateDir, "state directory")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids := fs.Args()
	if len(ids) == 0 {
		var err error
		if ids, err = lab.List(*stateDir); err != nil {
			return err
		}
		if len(ids) == 0 {
			fmt.Println("no labs")
			return nil
		}
	}
	bad := 0
	for _, id := range ids {
		l, err := lab.Load(*stateDir, id)
		if err != nil {
			return err
		}
		st, err := l.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(st)
		} else if st.OK() {
			fmt.Printf("lab %s: OK (%d namespaces, %d services)\n", id, len(l.Namespaces), len(l.Processes()))
		} else {
			fmt.Printf("lab %s: %s\n", id, strings.Join(st.Problems, "; "))
		}
		if !st.OK() {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d lab(s) not healthy", bad)
	}
	return nil
}
