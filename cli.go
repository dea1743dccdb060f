package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"keygate/keys"
)

// cliTime is the timestamp format of the API, reused for operators.
const cliTime = "2006-01-02T15:04:05.000-07:00"

func stamp(t time.Time) string { return t.UTC().Format(cliTime) }

func stampPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return stamp(*t)
}

// withKeys opens the database (creating it only if create) and runs fn
// with a keys.Service whose actor is the operator. Login audit is written
// synchronously (no recorder).
func (a *app) withKeys(cmd *cobra.Command, create bool, fn func(*keys.Service) error) error {
	st, err := a.openStore(cmd.Context(), create)
	if err != nil {
		return err
	}
	defer st.Close()
	return explain(fn(keys.NewService(st, nil, time.Now, a.log)))
}

// explain turns domain errors into operator-facing messages.
func explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keys.ErrNotFound):
		return errors.New("not found: check the partner and key ids (keygate partner list)")
	case errors.Is(err, keys.ErrDisabled):
		return errors.New("the partner or company is disabled")
	case errors.Is(err, keys.ErrUnavailable):
		return fmt.Errorf("database unavailable: %w", err)
	}
	return err
}

// commandGroup makes a command that only holds subcommands. Cobra would
// print help and exit 0 for an unknown subcommand of it (only the root
// checks); NoArgs makes that a one-line error and a non-zero exit.
func commandGroup(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) partnerCommand() *cobra.Command {
	cmd := commandGroup("partner", "Manage partners and their API keys")

	var name string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a partner and print its first API key (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, true, func(svc *keys.Service) error {
				p, k, err := svc.CreatePartner(cmd.Context(), keys.Operator, name)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, map[string]any{"id": p.ID, "name": p.Name, "keyId": k.ID, "apiKey": k.APIKey.Reveal(), "createdAt": stamp(p.CreatedAt)})
				}
				fmt.Fprintf(a.stdout, "partner  %s\nname     %s\nkey id   %s\napi key  %s\n\nStore the API key now: it is shown this once and cannot be retrieved again.\n",
					p.ID, p.Name, k.ID, k.APIKey.Reveal())
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "partner name (1-200 characters)")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = create.MarkFlagRequired("name")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List partners",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				ps, err := svc.ListPartners(cmd.Context())
				if err != nil {
					return err
				}
				if listJSON {
					out := make([]map[string]any, 0, len(ps))
					for _, p := range ps {
						out = append(out, map[string]any{"id": p.ID, "name": p.Name, "status": p.Status, "createdAt": stamp(p.CreatedAt)})
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Name, p.Status, stamp(p.CreatedAt))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var disableID string
	disable := &cobra.Command{
		Use:   "disable --partner ID",
		Short: "Disable a partner: none of its or its companies' keys log in or refresh any more",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				if err := svc.DisablePartner(cmd.Context(), keys.Operator, disableID); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "partner %s disabled\n", disableID)
				return nil
			})
		},
	}
	disable.Flags().StringVar(&disableID, "partner", "", "partner id")
	_ = disable.MarkFlagRequired("partner")

	cmd.AddCommand(create, list, disable, a.partnerKeyCommand())
	return cmd
}

func (a *app) partnerKeyCommand() *cobra.Command {
	cmd := commandGroup("key", "Manage a partner's API keys")

	var partnerID string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create --partner ID",
		Short: "Add an API key to a partner (shown once); existing keys stay valid until revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				k, err := svc.CreateKey(cmd.Context(), keys.Operator, keys.PartnerOwner(partnerID))
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, map[string]any{"partnerId": partnerID, "keyId": k.ID, "apiKey": k.APIKey.Reveal(), "createdAt": stamp(k.CreatedAt)})
				}
				fmt.Fprintf(a.stdout, "partner  %s\nkey id   %s\napi key  %s\n\nStore the API key now: it is shown this once and cannot be retrieved again.\n",
					partnerID, k.ID, k.APIKey.Reveal())
				return nil
			})
		},
	}
	create.Flags().StringVar(&partnerID, "partner", "", "partner id")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = create.MarkFlagRequired("partner")

	var listPartner string
	var listJSON bool
	list := &cobra.Command{
		Use:   "list --partner ID",
		Short: "List a partner's API keys (hints only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				ks, err := svc.ListKeys(cmd.Context(), keys.PartnerOwner(listPartner))
				if err != nil {
					return err
				}
				if len(ks) == 0 {
					// A partner is created with its first key and keys are
					// never deleted: no keys means no such partner.
					return keys.ErrNotFound
				}
				if listJSON {
					out := make([]map[string]any, 0, len(ks))
					for _, k := range ks {
						out = append(out, map[string]any{"keyId": k.ID, "hint": k.Hint, "createdAt": stamp(k.CreatedAt), "lastUsedAt": stampPtr(k.LastUsedAt), "revokedAt": stampPtr(k.RevokedAt)})
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY ID\tHINT\tCREATED\tLAST USED\tREVOKED")
				for _, k := range ks {
					fmt.Fprintf(tw, "%s\t%s...\t%s\t%v\t%v\n", k.ID, k.Hint, stamp(k.CreatedAt), orDash(stampPtr(k.LastUsedAt)), orDash(stampPtr(k.RevokedAt)))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listPartner, "partner", "", "partner id")
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	_ = list.MarkFlagRequired("partner")

	var revokePartner, revokeKey string
	revoke := &cobra.Command{
		Use:   "revoke --partner ID --key KEYID",
		Short: "Revoke a partner's API key and every refresh token obtained with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				if err := svc.RevokeKey(cmd.Context(), keys.Operator, keys.PartnerOwner(revokePartner), revokeKey); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "key %s revoked\n", revokeKey)
				return nil
			})
		},
	}
	revoke.Flags().StringVar(&revokePartner, "partner", "", "partner id")
	revoke.Flags().StringVar(&revokeKey, "key", "", "key id")
	_ = revoke.MarkFlagRequired("partner")
	_ = revoke.MarkFlagRequired("key")

	cmd.AddCommand(create, list, revoke)
	return cmd
}

func orDash(v any) any {
	if v == nil {
		return "-"
	}
	return v
}

func (a *app) signingKeyCommand() *cobra.Command {
	cmd := commandGroup("signing-key", "Manage JWT signing keys")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Add a signing key: published at once, signing after tokens.signing_key_activation_delay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer st.Close()
			ring, err := a.keyring(cmd.Context(), st)
			if err != nil {
				return err
			}
			if err := ring.EnsureKey(cmd.Context()); err != nil {
				return err
			}
			k, err := ring.Rotate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "new signing key %s (%s) published now, signs from %s\n", k.KID, k.Algorithm, stamp(k.ActivatesAt))
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List signing keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer st.Close()
			ring, err := a.keyring(cmd.Context(), st)
			if err != nil {
				return err
			}
			ks, err := ring.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALGORITHM\tCREATED\tACTIVATES\tRETIRED")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", k.KID, k.Algorithm, stamp(k.CreatedAt), stamp(k.ActivatesAt), orDash(stampPtr(k.RetiredAt)))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(rotate, list)
	return cmd
}
