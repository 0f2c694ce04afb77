// Package cli implements the `wardline` command: the lab, debugging access
// to the fast path's pinned state, the management API client and the
// benchmarks. Each subcommand parses its own flags.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// Main runs the CLI with args (without the program name).
func Main(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(os.Stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return c.run(ctx, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wardline <command> [arguments]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].usage)
	}
}

// subcommands dispatches "wardline <group> <sub> ...".
func subcommands(group string, subs map[string]func(ctx context.Context, args []string) error) func(ctx context.Context, args []string) error {
	return func(ctx context.Context, args []string) error {
		names := make([]string, 0, len(subs))
		for n := range subs {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(args) == 0 {
			return fmt.Errorf("usage: wardline %s %s ...", group, strings.Join(names, "|"))
		}
		f, ok := subs[args[0]]
		if !ok {
			return fmt.Errorf("wardline %s: unknown subcommand %q (want %s)", group, args[0], strings.Join(names, ", "))
		}
		return f(ctx, args[1:])
	}
}

// flags returns a FlagSet that reports errors instead of exiting.
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("wardline "+name, flag.ContinueOnError)
	return fs
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments (wardline analyze a.pcap --eve out.json) and
// returns the positional ones. "--" ends flag parsing.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
