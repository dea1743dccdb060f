package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"keygate/keys"
)

var _ keys.ChangeFeed = (*DB)(nil)

// channelExpr names the notification channel of the schema keygate's
// tables are in, so that two keygates on one database in two schemas (the
// tests', for one) do not wake each other: evaluated by the notifier and
// the listener alike, it cannot differ between them. A channel name is an
// identifier, at most 63 bytes.
const channelExpr = `'keygate_keys_' || left(current_schema(), 49)`

// Reconnection backoff of the listening connection.
const (
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 5 * time.Second
)

// WatchKeyChanges implements keys.ChangeFeed with LISTEN/NOTIFY, on a
// connection of its own outside the pool (a listening connection must
// stay one session). It calls changed for every notification
// (bumpKeyEpoch sends one with each revocation or disabling, on commit),
// and once each time LISTEN takes effect, after which no commit can go
// unannounced: a notification is lost while the connection is down, and
// that call covers the gap. It reconnects with backoff until ctx ends or
// the DB is closed.
//
// A notification arrives after its transaction has committed and answered,
// so it cannot make a guarantee on its own: keys' epoch check and keyTTL
// give the bounds, notifications only make the drop sooner.
func (d *DB) WatchKeyChanges(ctx context.Context, changed func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := minListenBackoff
	for ctx.Err() == nil {
		err := d.listen(ctx, changed, func() { backoff = minListenBackoff })
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("key change notifications: listening connection lost; the key cache relies on its epoch checks until it is back",
			"err", d.mapErr(err), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxListenBackoff)
	}
}

// listen connects, listens and delivers notifications until the
// connection fails or ctx ends; listening is called once LISTEN is in
// effect.
func (d *DB) listen(ctx context.Context, changed, listening func()) error {
	cfg := d.connConfig.Copy()
	cfg.RuntimeParams["application_name"] = "keygate key changes"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	var channel string
	callCtx, cancel := bound(ctx)
	err = conn.QueryRow(callCtx, `SELECT `+channelExpr).Scan(&channel)
	if err == nil {
		_, err = conn.Exec(callCtx, `LISTEN `+pgx.Identifier{channel}.Sanitize())
	}
	cancel()
	if err != nil {
		return err
	}
	changed() // whatever committed while no one listened
	listening()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		changed()
	}
}
