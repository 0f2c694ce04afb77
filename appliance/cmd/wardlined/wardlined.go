// Binary wardlined is the Wardline appliance daemon: it sets up the bridge
// between the inside and outside ports, attaches the XDP fast path to both,
// reads its events and serves the management API (see package daemon).
// SIGTERM stops it and leaves the fast path attached, so the box keeps
// forwarding and blocking.
package main

import (
	"context"
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
)

func logic() error {
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: OK\n", *configPath)
		return nil
	}
	if *checkKern {
		return daemon.CheckKernel(cfg, log.Printf)
	}
	if *uninstall {
		return daemon.Uninstall(cfg, log.Printf)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return daemon.Run(ctx, cfg, daemon.Options{Logf: log.Printf})
}

func main() {
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := logic(); err != nil {
		log.Fatal(err)
	}
}
