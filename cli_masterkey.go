package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"keygate/store"
	"keygate/tokens"
)

func (a *app) masterKeyCommand() *cobra.Command {
	cmd := commandGroup("master-key", "Manage the master key the signing keys and the refresh-token key are sealed under")
	var newKeyFile string
	rotate := &cobra.Command{
		Use:   "rotate --new-key-file FILE",
		Short: "Re-seal everything sealed under the master key under the key in FILE, in one transaction",
		Long: `Re-seal every signing key and every other secret sealed under the master key
(the refresh tokens' MAC key) under the new master key in FILE (at least 32
bytes, surrounding white space ignored), in one transaction. The keys
themselves stay the same: access tokens and refresh tokens issued before keep
working once the servers run with the new master key.

The current master key is read as keygate serve reads it (tokens.master_key,
else data/master.key beside the database); it must open every sealed row
first, or nothing is changed. Then, if it came from data/master.key, that file
is replaced with the new key (written beside it and synced before the commit,
renamed after it). If it came from tokens.master_key, set that to the new key.
Either way, restart every server: one still running keeps serving with the
keys it loaded, and warns at each key reload, until it is restarted with the
new key; the old key no longer starts a server on this database.

If the command is interrupted after its commit, data/master.key may still hold
the old key: run the same command again (it finds everything sealed under the
new key and only replaces the file), or copy FILE to data/master.key (mode
0600). Keep FILE until a server has started with the new key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.rotateMasterKey(cmd.Context(), newKeyFile)
		},
	}
	rotate.Flags().StringVar(&newKeyFile, "new-key-file", "", "file holding the new master key (at least 32 bytes)")
	_ = rotate.MarkFlagRequired("new-key-file")
	cmd.AddCommand(rotate)
	return cmd
}

func (a *app) rotateMasterKey(ctx context.Context, newKeyFile string) error {
	next, err := tokens.ReadMasterKeyFile(newKeyFile)
	if err != nil {
		return fmt.Errorf("--new-key-file %s: %w; nothing was changed", newKeyFile, err)
	}
	st, err := a.openStore(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()

	// The current key, as serve reads it, but never a new one.
	source, keyFile := "tokens.master_key", ""
	var current tokens.MasterKey
	if a.cfg.Tokens.MasterKey != "" {
		current, err = tokens.NewMasterKey(a.cfg.Tokens.MasterKey.Reveal())
	} else {
		keyFile = filepath.Join(filepath.Dir(a.cfg.Database.Path), "master.key")
		source = keyFile
		if current, err = tokens.ReadMasterKeyFile(keyFile); err != nil {
			return fmt.Errorf("no current master key: tokens.master_key is not set and %w; nothing was changed", err)
		}
	}
	if err != nil {
		return err
	}
	if current.Equal(next) {
		return fmt.Errorf("--new-key-file %s holds the current master key (%s): give it a new one; nothing was changed", newKeyFile, source)
	}

	// The new key file is written and synced before the commit, so that
	// after it only a rename is left to do.
	var pending *tokens.PendingKeyFile
	if keyFile != "" {
		if pending, err = tokens.PrepareKeyFile(keyFile, next); err != nil {
			return fmt.Errorf("writing the new key beside %s: %w; nothing was changed", keyFile, err)
		}
		defer pending.Discard()
	}

	rot, err := tokens.RotateMasterKey(ctx, st, current, next)
	committed := rot.SigningKeys+rot.Secrets > 0
	switch {
	case err != nil && committed:
		return fmt.Errorf("the database was re-sealed under the new master key, but then: %w; run the command again", err)
	case errors.Is(err, tokens.ErrSealed):
		return fmt.Errorf("the current master key (%s) is not the one the database is sealed under: %w; nothing was changed", source, err)
	case err != nil:
		return fmt.Errorf("re-sealing under the new master key: %w; nothing was changed", err)
	}

	if rot.Already > 0 && !committed {
		fmt.Fprintf(a.stdout, "everything (%d rows) was sealed under the new master key already: a rotation committed before; nothing re-sealed\n", rot.Already)
	} else {
		fmt.Fprintf(a.stdout, "re-sealed %d signing keys and %d sealed secrets under the new master key, in one transaction\n", rot.SigningKeys, rot.Secrets)
	}
	if pending != nil {
		if err := pending.Install(); err != nil {
			return fmt.Errorf("the database is sealed under the new master key, but replacing %s failed: %w; copy %s to %s (mode 0600) before starting any server", keyFile, err, newKeyFile, keyFile)
		}
		fmt.Fprintf(a.stdout, "%s now holds the new master key\n", keyFile)
	} else {
		fmt.Fprintf(a.stdout, "tokens.master_key is set (KEYGATE_TOKENS_MASTER_KEY or the configuration file): set it to the new master key, the contents of %s, for every server and keygate command\n", newKeyFile)
	}
	fmt.Fprintf(a.stdout, "\nRestart every keygate server on %s with the new master key: until then each keeps\n"+
		"serving with the keys it loaded and warns at each key reload; the old key no longer\n"+
		"starts a server on this database. Keep the old key as long as you keep backups made\n"+
		"before now: they are sealed under it.\n", a.cfg.Database.Describe())
	return nil
}

// holdsSealed reports whether st holds anything sealed under a master key:
// signing keys, or sealed secrets (a placeholder too: it stands for the key
// the master key derives).
func holdsSealed(ctx context.Context, st store.Store) (bool, error) {
	recs, err := st.ListSigningKeys(ctx)
	if err != nil {
		return false, err
	}
	secrets, err := st.ListSealedSecrets(ctx)
	if err != nil {
		return false, err
	}
	return len(recs) > 0 || len(secrets) > 0, nil
}
