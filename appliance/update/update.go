// Package update pushes a new image to a running Wardline box and keeps it
// only if the box comes back healthy and forwarding; otherwise the box
// returns to the release it ran before.
//
// It drives gokrazy's own update protocol (github.com/gokrazy/updater):
// the new root file system goes to the inactive root partition (gokrazy's
// A/B scheme), the boot partition and MBR follow with the root still
// pointing at the running partition and the test-boot flag in the kernel
// command line (see Image.TestbootBoot), and the box reboots: gokrazy's
// init switches to the new root for that one boot only.
// Only once the new release answers healthy and the bridge forwards in
// both directions does the updater make the switch permanent. If that does
// not happen within the deadline, the updater restores the previous boot
// partition (when it has the previous image) and reboots the box, which
// then boots the old root partition again; even if the updater itself goes
// away mid-way, the box's next reboot returns to the old release, because
// nothing made the test boot permanent.
//
// Shared partitions: gokrazy has one boot partition (kernel) and one /perm.
// A rollback restores the kernel only when given the previous image; /perm
// (configuration, state, audit log) is never touched by an update.
package update

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/gokrazy/updater"

	"github.com/wardline/wardline/mgmt"
)

// Options configure an update.
type Options struct {
	Image *Image // the new release
	// Previous, if set, is the image the box runs now: a rollback restores
	// its boot partition and MBR (the kernel), which gokrazy does not keep
	// in A/B copies.
	Previous *Image
	// Box is gokrazy's base URL on the box with its credentials, like
	// http://gokrazy:PASSWORD@192.168.1.2/ (the instance's http-password.txt).
	Box string
	// API is wardlined's management base URL, like http://198.18.254.1:9100.
	API string
	// Client makes every request (tests dial from a network namespace);
	// nil: http.DefaultClient.
	Client *http.Client
	// Timeout bounds the wait for the new release to become healthy after
	// its reboot, and again for the old one after a rollback. Default 3m.
	Timeout time.Duration
	// Window is how long forwarding progress is measured; default 10s.
	Window time.Duration
	// MinForwarded is how many packets each bridge port must send (the
	// bridge forwarding out of it) within Window; default 1.
	MinForwarded uint64
	// GuardDeadline is the box's wardline-guard -deadline: an unconfirmed
	// test boot is rebooted into the previous release after it. Timeout
	// must leave room before it (a guard reboot while the updater restores
	// the boot partition would leave it half-written). Default 10m.
	GuardDeadline time.Duration
	// Force updates even if the box already runs Image's release.
	Force bool
	Logf  func(format string, args ...any)

	api *mgmt.Client // wardlined's management API through Client
}

// Outcome of an update.
type Outcome string

const (
	Updated    Outcome = "updated"     // the new release runs and is permanent
	RolledBack Outcome = "rolled back" // the new release failed; the old one runs again
)

// ErrRolledBack is returned (wrapped, with the reason) when the new
// release was not healthy and the box is back on the old one.
var ErrRolledBack = errors.New("update rolled back")

// Result reports an update and its timings.
type Result struct {
	From    string  `json:"from"` // releases before and (attempted) after
	To      string  `json:"to"`
	Outcome Outcome `json:"outcome"`
	Reason  string  `json:"reason,omitempty"` // why it was rolled back
	Pushed  int64   `json:"pushed_bytes"`     // bytes streamed to the box
	// Push is the time to stream root, boot and MBR; Healthy from the
	// reboot until the new release was healthy and forwarding; Confirm
	// from making it permanent until it was healthy and forwarding again
	// after the confirming reboot; Rollback from the decision to roll
	// back until the old release was healthy and forwarding again.
	Push     time.Duration `json:"push_ns"`
	Healthy  time.Duration `json:"healthy_ns"`
	Confirm  time.Duration `json:"confirm_ns"`
	Rollback time.Duration `json:"rollback_ns"`
}

func (o *Options) defaults() {
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Window == 0 {
		o.Window = 10 * time.Second
	}
	if o.MinForwarded == 0 {
		o.MinForwarded = 1
	}
	if o.GuardDeadline == 0 {
		o.GuardDeadline = 10 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if !strings.HasSuffix(o.Box, "/") {
		o.Box += "/"
	}
	o.api = mgmt.NewClient(o.API)
	o.api.HTTP = o.Client
}

// Run updates the box to o.Image. It returns the Result and nil when the
// new release runs, the Result and an error wrapping ErrRolledBack when it
// was rolled back, and an error naming the step for anything else (the box
// then still runs the old release unless the error says otherwise).
func Run(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	res := Result{To: o.Image.Release}
	if o.Timeout+o.Window+time.Minute > o.GuardDeadline {
		return res, fmt.Errorf("update: -timeout %v (+ the %v window and a minute to roll back) does not end before the box's guard reboots an unconfirmed test boot (%v)",
			o.Timeout, o.Window, o.GuardDeadline)
	}
	h, err := o.health(ctx)
	switch {
	case err != nil:
		o.Logf("update: the box's management API does not answer (%v); updating anyway", err)
		res.From = "unknown"
	default:
		res.From = h.Release
		if h.Release == o.Image.Release && !o.Force {
			return res, fmt.Errorf("update: the box already runs release %s", h.Release)
		}
		if !h.Healthy {
			o.Logf("update: the box is unhealthy before the update (%s)", h.FirstError)
		}
	}
	if o.Previous != nil && res.From != "unknown" && o.Previous.Release != res.From {
		return res, fmt.Errorf("update: previous image %s is release %s, but the box runs %s", o.Previous.Path, o.Previous.Release, res.From)
	}

	// 1. Push: root first, since writing the inactive partition cannot
	// break the running system.
	target, err := updater.NewTarget(ctx, o.Box, o.Client)
	if err != nil {
		return res, fmt.Errorf("update: contact gokrazy at %s: %w", redact(o.Box), err)
	}
	boot, err := o.Image.TestbootBoot()
	if err != nil {
		return res, fmt.Errorf("update: %w", err)
	}
	bootR := io.NewSectionReader(bytes.NewReader(boot), 0, int64(len(boot)))
	start := time.Now()
	for _, p := range []struct {
		dest string
		r    *io.SectionReader
	}{{"root", o.Image.Root}, {"bootonly", bootR}, {"mbr", o.Image.MBR}} {
		t := time.Now()
		if err := target.StreamTo(ctx, p.dest, io.NewSectionReader(p.r, 0, p.r.Size())); err != nil {
			if p.dest == "mbr" && errors.Is(err, updater.ErrUpdateHandlerNotImplemented) {
				o.Logf("update: the box does not take MBR updates; skipped")
				continue
			}
			return res, fmt.Errorf("update: stream %s (%d bytes): %w", p.dest, p.r.Size(), err)
		}
		res.Pushed += p.r.Size()
		o.Logf("update: %s: %d bytes in %v", p.dest, p.r.Size(), time.Since(t).Round(time.Millisecond))
	}
	res.Push = time.Since(start)

	// 2. Reboot into the test boot and wait for the verdict.
	o.Logf("update: rebooting into %s (test boot)", o.Image.Release)
	rebooted := time.Now()
	if err := reboot(ctx, target); err != nil {
		return res, err
	}
	reason := o.waitHealthy(ctx, o.Image.Release, res.From)
	if reason == "" {
		res.Healthy = time.Since(rebooted)
		o.Logf("update: %s healthy and forwarding %v after the reboot; making it permanent", o.Image.Release, res.Healthy.Round(100*time.Millisecond))
		// Confirm: point root= at the new partition, and reboot once more.
		// The reboot is not optional: gokrazy computes the inactive
		// partition from the root= it booted with, so until the box boots
		// with the new root= it would write the next update over the
		// partition it runs from. It also proves the permanent setting
		// boots.
		confirmed := time.Now()
		target, err := updater.NewTarget(ctx, o.Box, o.Client)
		if err == nil {
			err = target.Switch(ctx)
		}
		if err == nil {
			err = reboot(ctx, target)
		}
		if err != nil {
			return res, fmt.Errorf("update: %s is healthy but making it permanent failed (the box returns to %s at its next reboot): %w",
				o.Image.Release, res.From, err)
		}
		if reason = o.waitHealthy(ctx, o.Image.Release, res.From); reason == "" {
			res.Confirm = time.Since(confirmed)
			res.Outcome = Updated
			o.Logf("update: %s permanent, healthy and forwarding %v after the confirming reboot", o.Image.Release, res.Confirm.Round(100*time.Millisecond))
			return res, nil
		}
		reason = "after the confirming reboot: " + reason
		// Booted with root= on the new partition, gokrazy's inactive one
		// is the old: switching points root= back at it.
		o.Logf("update: %s failed %s; rolling back to %s", o.Image.Release, reason, res.From)
		return o.rollback(ctx, res, reason, true)
	}
	o.Logf("update: %s failed: %s; rolling back to %s", o.Image.Release, reason, res.From)
	return o.rollback(ctx, res, reason, false)
}

// rollback returns the box to res.From: it restores the previous boot
// partition if it has it, switches root= back if the box had booted the
// new release permanently (switch), and reboots.
func (o *Options) rollback(ctx context.Context, res Result, reason string, switchBack bool) (Result, error) {
	res.Reason = reason
	decided := time.Now()
	target, err := updater.NewTarget(ctx, o.Box, o.Client)
	if err != nil {
		return res, fmt.Errorf("update: %s failed (%s) and gokrazy does not answer to roll back (%v): power-cycle the box; it boots %s again",
			o.Image.Release, reason, err, res.From)
	}
	if o.Previous != nil {
		for _, p := range []struct {
			dest string
			r    *io.SectionReader
		}{{"bootonly", o.Previous.Boot}, {"mbr", o.Previous.MBR}} {
			if err := target.StreamTo(ctx, p.dest, io.NewSectionReader(p.r, 0, p.r.Size())); err != nil && !errors.Is(err, updater.ErrUpdateHandlerNotImplemented) {
				return res, fmt.Errorf("update: rollback: restore the previous %s: %w", p.dest, err)
			}
		}
	}
	if switchBack {
		if err := target.Switch(ctx); err != nil {
			return res, fmt.Errorf("update: rollback: switch root back to %s: %w", res.From, err)
		}
	}
	if err := reboot(ctx, target); err != nil {
		return res, fmt.Errorf("update: rollback: %w", err)
	}
	if r := o.waitHealthy(ctx, res.From, ""); r != "" {
		return res, fmt.Errorf("update: %s failed (%s), and after the rollback %s is not healthy either: %s", o.Image.Release, reason, res.From, r)
	}
	res.Rollback = time.Since(decided)
	res.Outcome = RolledBack
	o.Logf("update: rolled back to %s in %v", res.From, res.Rollback.Round(100*time.Millisecond))
	return res, fmt.Errorf("%w: %s: %s", ErrRolledBack, o.Image.Release, reason)
}

// reboot asks gokrazy to reboot; the connection may drop as it does.
func reboot(ctx context.Context, t *updater.Target) error {
	err := t.Reboot(ctx)
	if err == nil || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return fmt.Errorf("update: reboot: %w", err)
}

// waitHealthy waits up to o.Timeout for the box to go down and come back
// running release want, healthy, and forwarding in both directions. It
// returns "" on success, or why not. A box that comes back on release
// wrong (the release it ran before a test boot) fails at once.
func (o *Options) waitHealthy(ctx context.Context, want, wrong string) string {
	deadline := time.Now().Add(o.Timeout)
	// The box answers with the old process until the reboot takes it down.
	for {
		if _, err := o.health(ctx); err != nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("the box did not go down for its reboot within %v", o.Timeout)
		}
		if sleep(ctx, 200*time.Millisecond) != nil {
			return ctx.Err().Error()
		}
	}
	last := "no answer from the management API"
	for time.Now().Before(deadline) {
		if why, done := o.check(ctx, want, wrong); done {
			return why
		} else if why != "" {
			last = why
		}
		if sleep(ctx, time.Second) != nil {
			return ctx.Err().Error()
		}
	}
	return fmt.Sprintf("not healthy and forwarding within %v after the reboot; last: %s", o.Timeout, last)
}

// check is one attempt: done with "" on success, done with a reason on a
// definite failure, not done with the current reason otherwise.
func (o *Options) check(ctx context.Context, want, wrong string) (why string, done bool) {
	h, err := o.health(ctx)
	switch {
	case err != nil:
		return err.Error(), false
	case wrong != "" && h.Release == wrong:
		return fmt.Sprintf("the box came back on release %s, not %s (the test boot did not switch the root partition)", wrong, want), true
	case h.Release != want:
		return fmt.Sprintf("release %q answers, want %q", h.Release, want), false
	case !h.Healthy:
		return "unhealthy: " + h.FirstError, false
	}
	a, err := o.status(ctx)
	if err != nil {
		return err.Error(), false
	}
	if sleep(ctx, o.Window) != nil {
		return ctx.Err().Error(), true
	}
	b, err := o.status(ctx)
	if err != nil {
		return err.Error(), false
	}
	if why := progress(a, b, o.MinForwarded, o.Window); why != "" {
		return why, false
	}
	return "", true
}

// progress says why b (taken window after a) does not show forwarding in
// both directions, or "" when it does.
func progress(a, b status, want uint64, window time.Duration) string {
	if b.Release != a.Release || len(a.Ports) == 0 || len(a.Ports) != len(b.Ports) {
		return fmt.Sprintf("status changed between samples (release %q → %q, %d → %d ports)", a.Release, b.Release, len(a.Ports), len(b.Ports))
	}
	var stuck []string
	for i, p := range b.Ports {
		q := a.Ports[i]
		if p.Error != "" {
			stuck = append(stuck, fmt.Sprintf("%s: %s", p.Interface, p.Error))
		} else if sent := p.TxPackets - min(q.TxPackets, p.TxPackets); sent < want {
			stuck = append(stuck, fmt.Sprintf("%s (%s) sent %d packets in %v, want ≥ %d", p.Interface, p.Role, sent, window, want))
		}
	}
	if len(stuck) > 0 {
		return "no forwarding progress: " + strings.Join(stuck, "; ")
	}
	return ""
}

// status is the part of wardlined's /api/v1/status the gate reads.
type status struct {
	Release string `json:"release"`
	Ports   []struct {
		Interface string `json:"interface"`
		Role      string `json:"role"`
		TxPackets uint64 `json:"tx_packets"`
		Error     string `json:"error"`
	} `json:"ports"`
}

// apiTimeout bounds each request to the management API: a box that is
// rebooting must not stall the gate's polling.
const apiTimeout = 5 * time.Second

func (o *Options) health(ctx context.Context) (mgmt.Health, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return o.api.Health(ctx) // a 503 carries the same JSON, naming the failing checks
}

func (o *Options) status(ctx context.Context) (status, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	var s status
	err := o.api.Get(ctx, "/api/v1/status", &s)
	return s, err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redact hides the password in a URL for messages.
func redact(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "…@" + u[at+1:]
}
