// Binary wardline is the Wardline command-line tool: the network lab
// (`wardline lab`), debugging access to the fast path (`wardline dp`), the
// management API client (`wardline ctl`) and the benchmarks
// (`wardline bench`). See package cli.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardline/wardline/appliance/cli"
	"github.com/wardline/wardline/lab"
)

func main() {
	// The lab starts its services by re-executing this binary.
	lab.RunServiceIfRequested()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := cli.Main(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wardline:", err)
		os.Exit(1)
	}
}
