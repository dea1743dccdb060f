package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"keygate/keys"
)

// auditEventJSON is an audit event as the CLI prints it.
type auditEventJSON struct {
	ID         int64  `json:"id"`
	At         string `json:"at"`
	ActorType  string `json:"actorType"`
	ActorID    string `json:"actorId"`
	Action     string `json:"action"`
	TargetType string `json:"targetType"`
	Target     string `json:"target"`
	ClientAddr string `json:"clientAddr"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail"`
}

func auditJSON(e keys.AuditEvent) auditEventJSON {
	return auditEventJSON{
		ID: e.ID, At: stamp(e.At), ActorType: string(e.ActorType), ActorID: e.ActorID, Action: e.Action,
		TargetType: e.TargetType, Target: e.Target, ClientAddr: e.Addr, Outcome: e.Outcome, Detail: e.Detail,
	}
}

func (a *app) auditCommand() *cobra.Command {
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit [--since DURATION]",
		Short: "Print the audit trail",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				evs, err := svc.ListAudit(cmd.Context(), time.Now().Add(-since))
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]auditEventJSON, 0, len(evs))
					for _, e := range evs {
						out = append(out, auditJSON(e))
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tTARGET\tCLIENT\tOUTCOME\tDETAIL")
				for _, e := range evs {
					fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s:%s\t%s\t%s\t%s\n", stamp(e.At), e.ActorType, e.ActorID, e.Action, e.TargetType, e.Target, e.Addr, e.Outcome, e.Detail)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back to go")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(a.auditExportCommand())
	return cmd
}

// auditExportCommand streams the audit trail as JSON lines, a page of the
// store at a time, for shipping to a log store before audit.retention
// deletes it.
func (a *app) auditExportCommand() *cobra.Command {
	var since string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export [--since DURATION|TIMESTAMP] --json",
		Short: "Stream the audit trail as JSON lines, oldest first",
		Long: `Stream the audit trail to standard output as JSON lines (one event per line,
oldest first), reading the database a page at a time. --since takes a
duration back from now (24h) or a timestamp (2026-12-01T00:00:00Z, or the
API's format); without it, the whole trail. Each line's "id" orders events
of one time and lets a log shipper skip what it already has.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !asJSON {
				return errors.New("audit export writes JSON lines only: pass --json")
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				w := bufio.NewWriter(a.stdout)
				enc := json.NewEncoder(w)
				err := svc.EachAudit(cmd.Context(), from, func(e keys.AuditEvent) error { return enc.Encode(auditJSON(e)) })
				return errors.Join(err, w.Flush())
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "a duration back from now (e.g. 24h) or a timestamp; default: the whole trail")
	cmd.Flags().BoolVar(&asJSON, "json", true, "write JSON lines (the only format)")
	return cmd
}

// parseSince reads --since: empty for the beginning, a duration back from
// now, or a timestamp in RFC 3339 or the API's format.
func parseSince(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: a duration back from now must not be negative", v)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, cliTime} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration (24h) or a timestamp (2026-12-01T00:00:00Z)", v)
}
