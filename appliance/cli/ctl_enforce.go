package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wardline/wardline/appliance/config"
	"github.com/wardline/wardline/enforce"
	"github.com/wardline/wardline/mgmt"
)

type enforceOpts struct {
	tokenFile, user, why, ttl, reason, dir, scope, action *string
}

func enforceFlags(fs *flag.FlagSet) *enforceOpts {
	u := os.Getenv("SUDO_USER") // the person behind sudo, not root
	if u == "" {
		u = os.Getenv("USER")
	}
	if u == "" {
		if cur, err := user.Current(); err == nil {
			u = cur.Username
		}
	}
	return &enforceOpts{
		tokenFile: fs.String("token-file", config.DefaultStateDir+"/api-token", "enforcement API token (or $WARDLINE_TOKEN)"),
		user:      fs.String("user", u, "operator name recorded in the audit log"),
		why:       fs.String("why", "", "promote, rollback, block rm: the reason, for the audit log"),
		ttl:       fs.String("ttl", "1h", "block add: how long the block lasts"),
		reason:    fs.String("reason", "", "block add: why (required)"),
		dir:       fs.String("dir", "src", "block add: src (drop what the target sends) or dst (drop what is sent to it)"),
		scope:     fs.String("scope", "xdp", "block add: xdp, nft or all"),
		action:    fs.String("action", "block", "block add: block, quarantine or inspect"),
	}
}

func (o *enforceOpts) setup(c *mgmt.Client) error {
	c.User = *o.user
	if t := os.Getenv("WARDLINE_TOKEN"); t != "" {
		c.Token = t
		return nil
	}
	b, err := os.ReadFile(*o.tokenFile)
	if err != nil {
		return fmt.Errorf("enforcement API token: %w (pass -token-file or set WARDLINE_TOKEN)", err)
	}
	c.Token = strings.TrimSpace(string(b))
	return nil
}

func isEnforceCommand(s string) bool {
	switch s {
	case "enforce", "policies", "policy", "promote", "rollback", "blocks", "block", "would-block", "audit":
		return true
	}
	return false
}

func runEnforce(ctx context.Context, c *mgmt.Client, o *enforceOpts, args []string, limit int) error {
	usage := func(u string) error { return fmt.Errorf("usage: wardline ctl %s", u) }
	switch args[0] {
	case "enforce":
		s, err := c.EnforceStatus(ctx)
		if err != nil {
			return err
		}
		printEnforceStatus(os.Stdout, s)
		return nil
	case "policies":
		ps, err := c.Policies(ctx)
		if err != nil {
			return err
		}
		printPolicies(os.Stdout, ps)
		return nil
	case "policy":
		if len(args) != 3 || (args[1] != "create" && args[1] != "delete") {
			return usage("policy create FILE|-  |  policy delete ID")
		}
		if args[1] == "delete" {
			return c.DeletePolicy(ctx, args[2])
		}
		var b []byte
		var err error
		if args[2] == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(args[2])
		}
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		if !json.Valid(b) {
			return fmt.Errorf("policy %s: not valid JSON", args[2])
		}
		ps, err := c.CreatePolicy(ctx, b)
		if err != nil {
			return err
		}
		printPolicies(os.Stdout, []enforce.PolicyStatus{ps})
		return nil
	case "promote":
		if len(args) != 3 {
			return usage("promote ID canary|enforce [-why TEXT]")
		}
		ps, err := c.Promote(ctx, args[1], args[2], *o.why)
		if err != nil {
			return err
		}
		printPolicies(os.Stdout, []enforce.PolicyStatus{ps})
		return nil
	case "rollback":
		if len(args) != 2 {
			return usage("rollback ID [-why TEXT]")
		}
		ps, err := c.Rollback(ctx, args[1], *o.why)
		if err != nil {
			return err
		}
		printPolicies(os.Stdout, []enforce.PolicyStatus{ps})
		return nil
	case "blocks":
		ds, err := c.Decisions(ctx)
		if err != nil {
			return err
		}
		printDecisions(os.Stdout, ds)
		return nil
	case "block":
		switch {
		case len(args) == 3 && args[1] == "add":
			if *o.reason == "" {
				return errors.New("block add: -reason is required (the audit log records why)")
			}
			d, err := c.AddDecision(ctx, mgmt.DecisionBody{Action: *o.action, Target: args[2], Dir: *o.dir, Scope: *o.scope, TTL: *o.ttl, Reason: *o.reason})
			if err != nil {
				return err
			}
			printDecisions(os.Stdout, []enforce.Decision{d})
			return nil
		case len(args) == 3 && (args[1] == "rm" || args[1] == "remove"):
			why := *o.why
			if why == "" {
				why = "removed by hand"
			}
			return c.RemoveDecision(ctx, args[2], why)
		}
		return usage("block add TARGET -reason TEXT [-ttl 1h] [-dir src|dst] [-scope xdp|nft|all] [-action block|quarantine|inspect]  |  block rm ID [-why TEXT]")
	case "would-block":
		w, err := c.WouldBlock(ctx, limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tPOLICY\tSTAGE\tACTION\tTARGET\tWHY")
		for _, x := range w {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.Time.Local().Format(time.TimeOnly), x.Policy, x.Stage, x.Action, x.Target, x.Why)
		}
		return tw.Flush()
	case "audit":
		recs, err := c.AuditLog(ctx, limit)
		if err != nil {
			return err
		}
		for _, r := range recs {
			fmt.Printf("%6d %s %-18s %-16s %-14s %-18s %s\n", r.Seq, r.Time.Local().Format(time.DateTime), r.Who, r.What, r.Policy, r.Target, r.Why)
		}
		return nil
	}
	return fmt.Errorf("wardline ctl: unknown enforcement command %q", args[0])
}

func printEnforceStatus(w io.Writer, s enforce.Status) {
	fmt.Fprintf(w, "enforced/desired %.3f; %d decisions in force, %d static; alerts in %d, lost %d; apply errors %d, audit errors %d\n",
		s.Ratio, s.Decisions, s.Static, s.AlertsIn, s.AlertsLost, s.ApplyErrors, s.AuditErrors)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tRATIO\tDESIRED\tADDED\tREFRESHED\tRESTORED\tREMOVED\tFOREIGN\tERRORS\tLAST PASS")
	for _, b := range s.Backends {
		fmt.Fprintf(tw, "%s\t%.3f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", b.Name, b.Ratio, b.Desired, b.Added, b.Refreshed, b.Restored, b.Removed, b.Foreign, b.Errors, b.LastDuration)
	}
	tw.Flush()
	h := s.Health
	fmt.Fprintf(w, "health (last %s): TCP %d attempts %.1f%% failed; DNS %d responses %.1f%% failed; never-block %d flows %.1f%% failed; %d drops (%d collateral)\n",
		s.Thresholds.Window, h.TCPAttempts, 100*h.TCPFailRatio(), h.DNSResponses, 100*h.DNSFailRatio(), h.NeverBlockFlows, 100*h.NeverBlockFailRatio(), h.Drops, h.CollateralDrops)
	if len(s.Refused) > 0 {
		fmt.Fprintf(w, "guardrail refusals: %v\n", s.Refused)
	}
	printPolicies(w, s.Policies)
}

func printPolicies(w io.Writer, ps []enforce.PolicyStatus) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tACTION\tSTAGE\tSINCE\tMATCHES\tWOULD-BLOCK\tACTIVE\tLAST ROLLBACK")
	for _, p := range ps {
		rb := "-"
		if p.LastRollback != nil {
			rb = p.LastRollback.Time.Local().Format(time.DateTime) + " " + p.LastRollback.Why
		}
		stage := string(p.Stage)
		if p.PromoteIn > 0 {
			stage += fmt.Sprintf(" (enforce in %s)", p.PromoteIn.Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Policy.ID, p.Policy.Action, stage, p.Since.Local().Format(time.DateTime),
			p.Matches, p.WouldBlock, p.Active, rb)
	}
	tw.Flush()
}

func printDecisions(w io.Writer, ds []enforce.Decision) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tDIR\tTARGET\tSCOPE\tEXPIRES IN\tBY\tREASON")
	for _, d := range ds {
		dir := d.Dir.String()
		if d.Action == enforce.ActionQuarantine {
			dir = "both"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Action, dir, d.Target, d.Scope, time.Until(d.Expires).Round(time.Second), d.By, d.Reason)
	}
	tw.Flush()
}
