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
	case errors.Is(err, keys.ErrScopeNotAllowed):
		return fmt.Errorf("%w: a key holds only scopes its partner is allowed (keygate partner scopes set)", err)
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

	var name, scopes string
	var asJSON bool
	var newKey keyFlags
	create := &cobra.Command{
		Use:   "create --name NAME [--scopes \"a b\"] [--key-scopes \"a\"] [--key-name NAME] [--expires-in DURATION]",
		Short: "Create a partner and print its first API key (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			allowed, err := keys.ParseScopeString("scopes", scopes)
			if err != nil {
				return err
			}
			in, err := newKey.input(cmd)
			if err != nil {
				return err
			}
			return a.withKeys(cmd, true, func(svc *keys.Service) error {
				p, k, err := svc.CreatePartner(cmd.Context(), keys.Operator, keys.PartnerInput{Name: name, Scopes: allowed, Key: in})
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, map[string]any{
						"id": p.ID, "name": p.Name, "scopes": p.Scopes.List(), "keyId": k.ID, "apiKey": k.APIKey.Reveal(), "createdAt": stamp(p.CreatedAt),
						"keyName": nonEmpty(k.Name), "keyScopes": k.Scopes.List(), "keyExpiresAt": stampPtr(k.ExpiresAt),
					})
				}
				fmt.Fprintf(a.stdout, "partner  %s\nname     %s\nscopes   %s\n", p.ID, p.Name, orNone(p.Scopes))
				a.printNewKey(k)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "partner name (1-200 characters)")
	create.Flags().StringVar(&scopes, "scopes", "", `the scopes the partner is allowed, space-separated ("orders:read orders:write"); default none`)
	newKey.register(create, "key-scopes")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = create.MarkFlagRequired("name")

	var scopesPartner, scopesSet string
	scopesCmd := commandGroup("scopes", "Manage the scopes a partner is allowed")
	set := &cobra.Command{
		Use:   "set --partner ID --scopes \"a b\"",
		Short: "Replace the scopes a partner is allowed; narrowing them narrows its and its companies' keys from their next login or refresh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			allowed, err := keys.ParseScopeString("scopes", scopesSet)
			if err != nil {
				return err
			}
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				if err := svc.SetPartnerScopes(cmd.Context(), keys.Operator, scopesPartner, allowed); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "partner %s is allowed: %s\n", scopesPartner, orNone(allowed))
				return nil
			})
		},
	}
	set.Flags().StringVar(&scopesPartner, "partner", "", "partner id")
	set.Flags().StringVar(&scopesSet, "scopes", "", `space-separated scopes; "" allows none`)
	_ = set.MarkFlagRequired("partner")
	_ = set.MarkFlagRequired("scopes")
	scopesCmd.AddCommand(set)

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
						out = append(out, map[string]any{"id": p.ID, "name": p.Name, "status": p.Status, "createdAt": stamp(p.CreatedAt), "scopes": p.Scopes.List()})
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCREATED\tSCOPES")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.Name, p.Status, stamp(p.CreatedAt), orNone(p.Scopes))
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

	cmd.AddCommand(create, list, disable, scopesCmd, a.partnerKeyCommand())
	return cmd
}

func (a *app) partnerKeyCommand() *cobra.Command {
	cmd := commandGroup("key", "Manage a partner's API keys")

	var partnerID string
	var asJSON bool
	var newKey keyFlags
	create := &cobra.Command{
		Use:   "create --partner ID [--scopes \"a b\"] [--key-name NAME] [--expires-in DURATION]",
		Short: "Add an API key to a partner (shown once); existing keys stay valid until revoked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := newKey.input(cmd)
			if err != nil {
				return err
			}
			return a.withKeys(cmd, false, func(svc *keys.Service) error {
				k, err := svc.CreateKey(cmd.Context(), keys.Operator, keys.PartnerOwner(partnerID), in)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.stdout, map[string]any{
						"partnerId": partnerID, "keyId": k.ID, "apiKey": k.APIKey.Reveal(), "createdAt": stamp(k.CreatedAt),
						"name": nonEmpty(k.Name), "scopes": k.Scopes.List(), "expiresAt": stampPtr(k.ExpiresAt),
					})
				}
				fmt.Fprintf(a.stdout, "partner  %s\n", partnerID)
				a.printNewKey(k)
				return nil
			})
		},
	}
	create.Flags().StringVar(&partnerID, "partner", "", "partner id")
	newKey.register(create, "scopes")
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
						out = append(out, map[string]any{
							"keyId": k.ID, "hint": k.Hint, "name": nonEmpty(k.Name), "scopes": k.Scopes.List(), "createdAt": stamp(k.CreatedAt),
							"expiresAt": stampPtr(k.ExpiresAt), "lastUsedAt": stampPtr(k.LastUsedAt), "revokedAt": stampPtr(k.RevokedAt),
						})
					}
					return writeJSON(a.stdout, out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KEY ID\tHINT\tNAME\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
				for _, k := range ks {
					fmt.Fprintf(tw, "%s\t%s...\t%s\t%s\t%s\t%v\t%v\t%v\n", k.ID, k.Hint, orDash(nonEmpty(k.Name)), orNone(k.Scopes), stamp(k.CreatedAt),
						orDash(stampPtr(k.ExpiresAt)), orDash(stampPtr(k.LastUsedAt)), orDash(stampPtr(k.RevokedAt)))
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

// nonEmpty is s, or nil for "" (which orDash prints as -).
func nonEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// orNone prints a scope set, "(none)" for the empty one.
func orNone(s keys.Scopes) string {
	if s.Empty() {
		return "(none)"
	}
	return s.String()
}

// keyFlags are the flags of a new key: its scopes, name and lifetime.
type keyFlags struct {
	scopesFlag   string // --scopes, or --key-scopes where --scopes is the partner's
	scopes, name string
	expiresIn    time.Duration
}

func (f *keyFlags) register(cmd *cobra.Command, scopesFlag string) {
	f.scopesFlag = scopesFlag
	cmd.Flags().StringVar(&f.scopes, scopesFlag, "", `the key's scopes, space-separated, within the partner's; default all the partner's`)
	cmd.Flags().StringVar(&f.name, "key-name", "", "a name for the key (1-100 characters), to tell keys apart")
	cmd.Flags().DurationVar(&f.expiresIn, "expires-in", 0, "the key expires this long from now (e.g. 2160h); default never")
}

// input is the keys.KeyInput the flags ask for.
func (f *keyFlags) input(cmd *cobra.Command) (keys.KeyInput, error) {
	var in keys.KeyInput
	if cmd.Flags().Changed(f.scopesFlag) {
		s, err := keys.ParseScopeString(f.scopesFlag, f.scopes)
		if err != nil {
			return in, err
		}
		in.Scopes = &s
	}
	if cmd.Flags().Changed("key-name") {
		if f.name == "" {
			return in, &keys.ValidationError{Field: "key-name", Message: "must not be empty"}
		}
		in.Name = f.name
	}
	if cmd.Flags().Changed("expires-in") {
		if f.expiresIn <= 0 {
			return in, &keys.ValidationError{Field: "expires-in", Message: "must be a positive duration, e.g. 2160h"}
		}
		at := time.Now().Add(f.expiresIn)
		in.ExpiresAt = &at
	}
	return in, nil
}

// printNewKey prints a key just made, with its only copy of the API key.
func (a *app) printNewKey(k keys.NewKey) {
	fmt.Fprintf(a.stdout, "key id   %s\n", k.ID)
	if k.Name != "" {
		fmt.Fprintf(a.stdout, "key name %s\n", k.Name)
	}
	fmt.Fprintf(a.stdout, "key scopes %s\n", orNone(k.Scopes))
	if k.ExpiresAt != nil {
		fmt.Fprintf(a.stdout, "expires  %s\n", stamp(*k.ExpiresAt))
	}
	fmt.Fprintf(a.stdout, "api key  %s\n\nStore the API key now: it is shown this once and cannot be retrieved again.\n", k.APIKey.Reveal())
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
