// Binary wardlined is the Wardline appliance daemon: it sets up the bridge
// between the inside and outside ports, attaches the XDP fast path to both,
// reads its events and serves the management API (see package daemon).
// SIGTERM stops it and leaves the fast path attached, so the box keeps
// forwarding and blocking.
//
// Exit codes: 0 after SIGTERM/SIGINT or a successful one-shot mode (-check,
// -check-kernel, -uninstall, -version); 1 for a failure a restart may heal;
// 2 for bad flags; 125 for an invalid configuration or a kernel that lacks
// what the configuration needs, which gokrazy's supervisor takes as "do not
// restart".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardline/wardline/appliance/config"
	"github.com/wardline/wardline/appliance/daemon"
)

var (
	configPath = flag.String("config", "/perm/wardline/wardlined.json", "configuration file")
	check      = flag.Bool("check", false, "validate the configuration and exit")
	checkKern  = flag.Bool("check-kernel", false, "check the running kernel for every option and BPF feature the configuration needs, and exit")
	uninstall  = flag.Bool("uninstall", false, "detach the fast path, remove its pins and the nft table, and exit (the bridge, state and audit log stay)")
	version    = flag.Bool("version", false, "print the release and exit")
	keepCaps   = flag.Bool("keep-capabilities", false, "do not drop capabilities after setup (debugging; by default only those in daemon.RuntimeCapabilities stay)")
)

func logic() error {
	if *version {
		fmt.Println(daemon.Release)
		return nil
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fmt.Errorf("%w (%w)", err, daemon.ErrPermanent)
	}
	if *check {
		fmt.Printf("%s: OK\n", *configPath)
		return nil
	}
	if *checkKern {
		if err := daemon.CheckKernel(cfg, log.Printf); err != nil {
			return fmt.Errorf("%w (%w)", err, daemon.ErrPermanent)
		}
		return nil
	}
	if *uninstall {
		return daemon.Uninstall(cfg, log.Printf)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return daemon.Run(ctx, cfg, daemon.Options{Logf: log.Printf, DropCapabilities: !*keepCaps})
}

func main() {
	flag.CommandLine.Init(os.Args[0], flag.ContinueOnError)
	if err := flag.CommandLine.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(daemon.ExitOK)
		}
		os.Exit(daemon.ExitUsage) // flag printed the error and the usage
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "wardlined: unexpected arguments %q (flags only)\n", flag.Args())
		os.Exit(daemon.ExitUsage)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := logic(); err != nil {
		log.Print(err)
		if errors.Is(err, daemon.ErrPermanent) {
			log.Printf("exit %d: a restart cannot fix this; correct the configuration or the kernel", daemon.ExitPermanent)
			os.Exit(daemon.ExitPermanent)
		}
		os.Exit(daemon.ExitFailure)
	}
}
