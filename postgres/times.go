package postgres

import "time"

// Times are stored as Unix milliseconds, like SQLite's, and read back in
// UTC.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// msPtr is a nullable column's value: nil for nil.
func msPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

// msZero is a nullable column's value: nil for the zero time.
func msZero(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromMSPtr(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMS(*v)
	return &t
}

func fromMSZero(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return fromMS(*v)
}

// nullString is a nullable text column's value: nil for "".
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
