package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
)

// leakedPath is where secret scanners report leaked keys.
const leakedPath = "/api/v1/keys/leaked"

// LeakedMaxBodyBytes caps a leaked-key report's body instead of
// server.max_body_bytes: 1,000 items of GitHub's format, with long URLs.
const LeakedMaxBodyBytes = 1 << 20

// Headers of a leaked-key report's signature.
const (
	headerGitHubKeyID     = "Github-Public-Key-Identifier"
	headerGitHubSignature = "Github-Public-Key-Signature"
	headerHMACSignature   = "X-Keygate-Signature"
)

// bodyLimit is the most a request to the route of c may send.
func (s *Server) bodyLimit(c *gin.Context) int64 {
	if s.reporters != nil && c.FullPath() == leakedPath {
		return LeakedMaxBodyBytes
	}
	return s.cfg.MaxBodyBytes
}

// reportLeaked takes a secret scanner's report of leaked tokens, checks
// its signature on the raw body before anything else reads it (its
// Content-Type included), and answers a verdict per token.
func (s *Server) reportLeaked(c *gin.Context) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = errTooLarge
		} else {
			err = &keys.ValidationError{Field: "body", Message: "could not be read"}
		}
		s.fail(c, err)
		return
	}
	h := c.Request.Header
	reporter, err := s.reporters.Verify(body, keys.Signatures{
		GitHubKeyID: h.Get(headerGitHubKeyID), GitHub: h.Get(headerGitHubSignature), HMAC: h.Get(headerHMACSignature),
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "application/json" {
		s.fail(c, errMediaType)
		return
	}
	reports, err := decodeLeakReports(body)
	if err != nil {
		s.fail(c, err)
		return
	}
	actor := keys.Actor{Type: keys.ActorReporter, ID: reporter, Addr: c.ClientIP()}
	verdicts, err := s.keys.ReportLeaked(c.Request.Context(), actor, reports)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := make([]api.LeakVerdict, len(verdicts))
	for i, v := range verdicts {
		out[i] = api.LeakVerdict{TokenHash: v.TokenHash, TokenType: v.TokenType, Label: string(v.Label)}
		s.metrics.LeakReported(string(v.Label))
	}
	c.JSON(http.StatusOK, out)
}

// decodeLeakReports reads a JSON array of api.LeakReport objects, each
// with the four members as strings (token not empty), members matched
// exactly; unknown members are ignored. The count is the service's to
// check.
func decodeLeakReports(body []byte) ([]keys.LeakReport, error) {
	invalid := func(field, msg string) error { return &keys.ValidationError{Field: field, Message: msg} }
	if !utf8.Valid(body) {
		return nil, invalid("body", "must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, invalid("body", "must be a JSON array")
	}
	reports := []keys.LeakReport{}
	for i := 0; dec.More(); i++ {
		var members map[string]json.RawMessage
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalid("body", "must be a well-formed JSON array")
		}
		at := "[" + strconv.Itoa(i) + "]"
		if raw[0] != '{' || json.Unmarshal(raw, &members) != nil {
			return nil, invalid(at, "must be an object")
		}
		var r api.LeakReport
		for _, m := range []struct {
			name string
			dst  **string
		}{{"token", &r.Token}, {"type", &r.Type}, {"url", &r.URL}, {"source", &r.Source}} {
			v, ok := members[m.name]
			if !ok {
				return nil, invalid(at+"."+m.name, "is required")
			}
			if v[0] != '"' || json.Unmarshal(v, m.dst) != nil {
				return nil, invalid(at+"."+m.name, "must be a string")
			}
		}
		if *r.Token == "" {
			return nil, invalid(at+".token", "must not be empty")
		}
		reports = append(reports, keys.LeakReport{Token: keys.Secret(*r.Token), Type: *r.Type, URL: *r.URL, Source: *r.Source})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, invalid("body", "must be a well-formed JSON array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("body", "must hold exactly one JSON array")
	}
	return reports, nil
}
