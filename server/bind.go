package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
)

// bind reads and strictly decodes a JSON object body into dst, then runs
// validate on it. It renders the error and returns false on failure.
func bind[T any](s *Server, c *gin.Context, dst *T, validate func(*T) error) bool {
	if err := s.decode(c.Request, dst); err != nil {
		s.fail(c, err)
		return false
	}
	if err := validate(dst); err != nil {
		s.fail(c, err)
		return false
	}
	return true
}

// bindOptional is bind for a body that may be left out: an empty body
// leaves dst as it is; any other must be a JSON object as for bind.
func bindOptional[T any](s *Server, c *gin.Context, dst *T, validate func(*T) error) bool {
	body, err := readBody(c.Request)
	if err == nil && len(body) > 0 {
		err = jsonBody(c.Request, body, dst)
	}
	if err == nil {
		err = validate(dst)
	}
	if err != nil {
		s.fail(c, err)
		return false
	}
	return true
}

func (s *Server) decode(r *http.Request, dst any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errMediaType
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeStrict(body, dst)
}

// jsonBody decodes a body already read, if it is declared JSON.
func jsonBody(r *http.Request, body []byte, dst any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errMediaType
	}
	return decodeStrict(body, dst)
}

// readBody reads the request's body, within the server's cap.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errTooLarge
		}
		return nil, &keys.ValidationError{Field: "body", Message: "could not be read"}
	}
	return body, nil
}

// decodeStrict accepts exactly one JSON object whose members are the json
// tags of dst's fields, spelled exactly, each at most once. encoding/json
// alone would match members case-insensitively, let duplicates overwrite
// each other and replace invalid UTF-8 silently. It reads the body once,
// decoding each member straight into its field; a member of the wrong type
// is reported only once the whole object has proved well-formed, so that a
// malformed body is always "body", whatever its members hold.
func decodeStrict(body []byte, dst any) error {
	invalid := func(msg string) error { return &keys.ValidationError{Field: "body", Message: msg} }
	if !utf8.Valid(body) {
		return invalid("must be valid UTF-8")
	}
	v := reflect.ValueOf(dst).Elem()
	fields := fieldIndex(v.Type())
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return invalid("must be a JSON object")
	}
	var seen uint64 // fields already decoded, by index
	var typeErr error
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid("must be a well-formed JSON object")
		}
		name, _ := tok.(string)
		f, ok := fields[name]
		if !ok {
			return &keys.ValidationError{Field: truncate(name), Message: "unknown field"}
		}
		if seen&(1<<f.index) != 0 {
			return &keys.ValidationError{Field: name, Message: "duplicate field"}
		}
		seen |= 1 << f.index
		err = dec.Decode(v.Field(f.index).Addr().Interface())
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case err == nil:
		case errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("must be a well-formed JSON object")
		case errors.As(err, &ute), f.typ == timeType:
			// A member of the wrong type, or a timestamp that does not
			// parse (api.Time's own UnmarshalJSON).
			if typeErr == nil {
				typeErr = &keys.ValidationError{Field: name, Message: "must be " + jsonType(f.typ)}
			}
		default:
			return invalid("must be a well-formed JSON object")
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return invalid("must be a well-formed JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("must hold exactly one JSON object")
	}
	return typeErr
}

type field struct {
	index int
	typ   reflect.Type
}

var fieldCache sync.Map // reflect.Type -> map[string]field

// fieldIndex maps a request type's json member names to its fields. A
// request type has at most 64 fields (decodeStrict tracks them in a word).
func fieldIndex(t reflect.Type) map[string]field {
	if v, ok := fieldCache.Load(t); ok {
		return v.(map[string]field)
	}
	if t.NumField() > 64 {
		panic("server: a request type has more than 64 fields")
	}
	fields := make(map[string]field, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = field{index: i, typ: t.Field(i).Type}
		}
	}
	fieldCache.Store(t, fields)
	return fields
}

// timeType is a request member holding a timestamp.
var timeType = reflect.TypeFor[*api.Time]()

func jsonType(t reflect.Type) string {
	if t == timeType {
		return "a timestamp such as 2026-06-26T07:56:42.199+00:00"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonType(t.Elem()), "a "), "an ") + "s"
	}
	return "a " + t.Kind().String()
}

// truncate keeps hostile member names out of long error messages. It cuts
// at a character boundary, so the message stays valid UTF-8.
func truncate(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "..."
	}
	if s == "" {
		return `""`
	}
	return s
}

// requiredString checks a required, non-empty string member.
func requiredString(field string, v *string) error {
	if v == nil {
		return &keys.ValidationError{Field: field, Message: "is required"}
	}
	if *v == "" {
		return &keys.ValidationError{Field: field, Message: "must not be empty"}
	}
	return nil
}

// boundedString checks an optional string member of 1..max characters.
func boundedString(field string, v *string, maxLen int) error {
	if v == nil {
		return nil
	}
	if n := utf8.RuneCountInString(*v); n == 0 || n > maxLen {
		return &keys.ValidationError{Field: field, Message: fmt.Sprintf("must be 1 to %d characters", maxLen)}
	}
	return nil
}
