package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Why statements that run per request compare with "= +?", not "= ?":
// SQLite (3.54, as go-sqlite3 ships it) lets its planner peek at a value
// bound to a "?" that a join or a multi-term WHERE compares, or that a
// LIMIT takes, and marks the statement to be planned again when that value
// is rebound; go-sqlite3 clears the bindings before every run, which counts
// as a rebinding. Such a statement was parsed and planned anew on every
// execution: a key lookup took about 80 µs of CPU instead of 15. A unary
// plus hides the value from the planner and changes nothing else: the
// value, its type and the index the statement uses stay the same
// (BenchmarkResolveKey measures it).

// stmts prepares a set of statements on one pool, keeping the first error
// and every statement made, so that they close together.
type stmts struct {
	err  error
	made []*sql.Stmt
}

// preparer is what statements are prepared on: a pool (*sql.DB), or the
// writer's own connection (*sql.Conn), whose statements then run on it
// without database/sql looking for a connection each time.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (s *stmts) preparer(ctx context.Context, db preparer) func(q string) *sql.Stmt {
	return func(q string) *sql.Stmt {
		if s.err != nil {
			return nil
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			s.err = err
			return nil
		}
		s.made = append(s.made, st)
		return st
	}
}

func (s *stmts) close() {
	for _, st := range s.made {
		st.Close()
	}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func nullMS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}
