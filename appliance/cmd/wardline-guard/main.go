// Binary wardline-guard is the box-side half of `make update`: a gokrazy
// service that, in a test boot of an update, reboots the box into the
// previous release if the updater has not confirmed the new one within
// -deadline (see appliance/update.Guard). In any other boot it exits 0,
// which tells gokrazy not to restart it.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wardline/wardline/appliance/update"
)

func main() {
	deadline := flag.Duration("deadline", 10*time.Minute, "how long a test boot may run unconfirmed")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := update.Guard(ctx, update.GuardOptions{Deadline: *deadline, Logf: log.Printf}); err != nil && ctx.Err() == nil {
		log.Print(err)
		os.Exit(1)
	}
}
