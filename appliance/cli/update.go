package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wardline/wardline/appliance/update"
)

func init() {
	register(command{name: "update", usage: "push a new image to a running box; keep it only if it comes back healthy and forwarding (make update)", run: runUpdate})
}

func runUpdate(ctx context.Context, args []string) error {
	fs := flags("update")
	image := fs.String("image", "", "full disk image built by `make image` (IMAGE.release names its release)")
	previous := fs.String("previous", "", "the image the box runs now (optional): a rollback then restores its kernel too")
	box := fs.String("box", "", "the box's gokrazy address: host, host:port, [fe80::1%eth0] or a URL")
	passwordFile := fs.String("password-file", "", "gokrazy's update password (the instance's http-password.txt)")
	api := fs.String("api", "http://198.18.254.1:9100", "wardlined's management base URL")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long the new release has to become healthy and forward after its reboot")
	window := fs.Duration("window", 10*time.Second, "forwarding-progress window")
	minFwd := fs.Uint64("min-forwarded", 1, "packets each bridge port must send within -window")
	force := fs.Bool("force", false, "update even if the box already runs the image's release")
	guard := fs.Duration("guard-deadline", 10*time.Minute, "the box's wardline-guard -deadline (the image's; -timeout must end well before it)")
	asJSON := fs.Bool("json", false, "end with the result as one JSON line (outcome, releases, bytes, durations in ns)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *image == "" || *box == "" || *passwordFile == "" {
		return errors.New("wardline update: -image, -box and -password-file are required")
	}
	pw, err := os.ReadFile(*passwordFile)
	if err != nil {
		return fmt.Errorf("wardline update: read the gokrazy password: %w", err)
	}
	boxURL, err := gokrazyURL(*box, strings.TrimSpace(string(pw)))
	if err != nil {
		return fmt.Errorf("wardline update: -box %q: %w", *box, err)
	}
	im, err := update.OpenImage(*image)
	if err != nil {
		return fmt.Errorf("wardline update: %w", err)
	}
	defer im.Close()
	o := update.Options{Image: im, Box: boxURL, API: *api, Timeout: *timeout, Window: *window, MinForwarded: *minFwd, Force: *force, GuardDeadline: *guard,
		Client: &http.Client{Timeout: 10 * time.Minute}, // streams the root file system
		Logf:   func(f string, a ...any) { fmt.Printf(f+"\n", a...) }}
	if *previous != "" {
		if o.Previous, err = update.OpenImage(*previous); err != nil {
			return fmt.Errorf("wardline update: -previous: %w", err)
		}
		defer o.Previous.Close()
	}
	res, err := update.Run(ctx, o)
	fmt.Printf("update %s → %s: %s; pushed %d bytes in %v, healthy %v after the test boot, %v after the confirming reboot, rollback %v\n",
		res.From, res.To, outcome(res, err), res.Pushed, res.Push.Round(100*time.Millisecond),
		res.Healthy.Round(100*time.Millisecond), res.Confirm.Round(100*time.Millisecond), res.Rollback.Round(100*time.Millisecond))
	if *asJSON {
		j, _ := json.Marshal(res)
		fmt.Printf("%s\n", j)
	}
	return err
}

func outcome(r update.Result, err error) string {
	switch {
	case r.Outcome != "":
		return string(r.Outcome)
	case err != nil:
		return "failed"
	}
	return "?"
}

// gokrazyURL turns a host (with optional port or IPv6 zone) or a URL into
// gokrazy's base URL with the update credentials.
func gokrazyURL(box, password string) (string, error) {
	if !strings.Contains(box, "://") {
		box = "http://" + box
	}
	// A zone in a literal IPv6 address must be escaped in a URL (%25).
	if i := strings.Index(box, "%"); i >= 0 && !strings.HasPrefix(box[i:], "%25") {
		box = box[:i] + "%25" + box[i+1:]
	}
	u, err := url.Parse(box)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	u.User = url.UserPassword("gokrazy", password)
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}
