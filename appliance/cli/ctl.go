package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wardline/wardline/lab"
	"github.com/wardline/wardline/mgmt"
)

func init() {
	register(command{name: "ctl", usage: "talk to a running wardlined: status, health, flows, alerts, incidents, metrics; enforcement: enforce, policies, policy, promote, rollback, blocks, block, would-block, audit", run: runCtl})
}

func runCtl(ctx context.Context, args []string) error {
	fs := flags("ctl")
	addr := fs.String("addr", "198.18.254.1:9100", "management address of wardlined")
	labID := fs.String("lab", "", "reach the daemon of this lab (from its management namespace)")
	all := fs.Bool("all", false, "flows: include link-local and multicast control flows")
	limit := fs.Int("limit", 50, "flows, would-block, audit: how many recent records")
	ef := enforceFlags(fs)
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return fmt.Errorf("usage: wardline ctl [-addr host:port] [-lab ID] status|health|flows|alerts|incidents|metrics|enforce|policies|policy|promote|rollback|blocks|block|would-block|audit")
	}
	c := mgmt.NewClient(*addr)
	if *labID != "" {
		l, err := lab.Load(lab.DefaultStateDir, *labID)
		if err != nil {
			return err
		}
		c.HTTP = l.Host("mgmt").HTTPClient()
	}
	if isEnforceCommand(rest[0]) {
		if err := ef.setup(c); err != nil {
			return err
		}
		return runEnforce(ctx, c, ef, rest, *limit)
	}
	if len(rest) != 1 {
		return fmt.Errorf("wardline ctl %s: takes no arguments", rest[0])
	}
	switch rest[0] {
	case "status":
		var v any
		if err := c.Get(ctx, "/api/v1/status", &v); err != nil {
			return err
		}
		return printJSON(v)
	case "health":
		h, err := c.Health(ctx)
		if err != nil {
			return err
		}
		for _, ch := range h.Checks {
			mark := "ok  "
			if !ch.OK {
				mark = "FAIL"
			}
			fmt.Printf("%s %-14s %s\n", mark, ch.Name, ch.Detail)
		}
		if !h.Healthy {
			return fmt.Errorf("unhealthy: %s", h.FirstError)
		}
		return nil
	case "flows":
		var flows []mgmt.Flow
		if err := c.Get(ctx, fmt.Sprintf("/api/v1/flows?limit=%d", *limit), &flows); err != nil {
			return err
		}
		printFlows(os.Stdout, flows, *all)
		return nil
	case "alerts", "incidents":
		var v any
		path := "/api/v1/" + rest[0]
		if rest[0] == "alerts" {
			path += fmt.Sprintf("?limit=%d", *limit)
		}
		if err := c.Get(ctx, path, &v); err != nil {
			return err
		}
		return printJSON(v)
	case "metrics":
		resp, err := c.HTTP.Get(c.Base + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(os.Stdout, resp.Body)
		return err
	}
	return fmt.Errorf("wardline ctl: unknown command %q (want status, health, flows, alerts, incidents, metrics, enforce, policies, policy, promote, rollback, blocks, block, would-block or audit)", strings.Join(rest, " "))
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
