package api_test

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"keygate/api"
)

// loadDocument parses and validates the embedded document the way
// kin-openapi's router and validators do, examples included.
func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatalf("loading api/openapi.json: %v", err)
	}
	if err := doc.Validate(t.Context(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("api/openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadDocument(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	for _, s := range doc.Servers {
		if strings.Contains(s.URL, "://") {
			t.Errorf("server %q names a host: the document must describe whichever host serves it", s.URL)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(api.OpenAPI(), &raw); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
}

// members returns the JSON member names of a wire type, embedded structs
// flattened, and which of them are always written (no omitempty).
func members(t reflect.Type) (names, always []string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			n, a := members(f.Type)
			names, always = append(names, n...), append(always, a...)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	slices.Sort(names)
	slices.Sort(always)
	return names, always
}

// TestWireTypesMatchTheDocument: each type in package api has exactly the
// members of its schema, and every member a response type always writes
// is required by the schema, so that the document cannot promise or miss
// a member the server renders.
func TestWireTypesMatchTheDocument(t *testing.T) {
	doc := loadDocument(t)
	for _, tc := range []struct {
		schema   string
		typ      any
		response bool
		skip     []string // members the type has that this schema's variant lacks
	}{
		{"LoginRequest", api.LoginRequest{}, false, nil},
		{"RefreshRequest", api.RefreshRequest{}, false, nil},
		{"LogoutRequest", api.RefreshRequest{}, false, nil},
		{"CreateCompanyRequest", api.CreateCompanyRequest{}, false, nil},
		{"Error", api.Error{}, true, nil},
		{"TokenResponse", api.TokenResponse{}, true, nil},
		{"PartnerMe", api.Me{}, true, []string{"partnerId"}},
		{"CompanyMe", api.Me{}, true, nil},
		{"Company", api.Company{}, true, nil},
		{"CreatedCompany", api.CreatedCompany{}, true, nil},
		{"CompanyList", api.CompanyList{}, true, nil},
		{"CreatedKey", api.CreatedKey{}, true, nil},
		{"Key", api.Key{}, true, nil},
		{"KeyList", api.KeyList{}, true, nil},
		{"HealthStatus", api.Status{}, true, nil},
		{"ReadyStatus", api.Status{}, true, nil},
		{"OAuthToken", api.OAuthToken{}, true, nil},
		{"OAuthError", api.OAuthError{}, true, nil},
		{"ActiveIntrospection", api.Introspection{}, true, nil},
		{"InactiveIntrospection", api.Introspection{}, true, []string{
			"client_id", "sub", "scope", "exp", "iat", "nbf", "iss", "aud", "token_type", "jti", "kind", "partner_id", "company_id",
		}},
		{"ServerMetadata", api.ServerMetadata{}, true, nil},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			ref := doc.Components.Schemas[tc.schema]
			if ref == nil {
				t.Fatalf("no schema %s", tc.schema)
			}
			s := ref.Value
			names, always := members(reflect.TypeOf(tc.typ))
			names = slices.DeleteFunc(names, func(n string) bool { return slices.Contains(tc.skip, n) })
			var props []string
			for name := range s.Properties {
				props = append(props, name)
			}
			slices.Sort(props)
			if !slices.Equal(names, props) {
				t.Errorf("api.%T has members %v, the schema %v", tc.typ, names, props)
			}
			if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
				t.Errorf("schema %s allows unknown members: the server refuses them in requests and never writes them", tc.schema)
			}
			if !tc.response {
				return
			}
			for _, name := range always {
				if !slices.Contains(s.Required, name) && !slices.Contains(tc.skip, name) {
					t.Errorf("api.%T always writes %s, the schema does not require it", tc.typ, name)
				}
			}
		})
	}
}

// TestErrorCodesMatchTheDocument: the Error schema's codes are api's.
func TestErrorCodesMatchTheDocument(t *testing.T) {
	doc := loadDocument(t)
	want := []string{
		api.CodeValidation, api.CodeUnauthorized, api.CodeForbidden, api.CodeNotFound, api.CodeMethodNotAllowed,
		api.CodeConflict, api.CodePayloadTooLarge, api.CodeUnsupportedMedia, api.CodeRateLimited, api.CodeInternal,
		api.CodeServiceUnavailable,
	}
	var got []string
	for _, v := range doc.Components.Schemas["Error"].Value.Properties["error"].Value.Enum {
		got = append(got, v.(string))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Error codes in the document %v, in api %v", got, want)
	}
}

// TestOAuthErrorCodesMatchTheDocument: the OAuthError schema's codes are
// the ones package api names, and each OAuth operation's error responses
// draw on them alone.
func TestOAuthErrorCodesMatchTheDocument(t *testing.T) {
	doc := loadDocument(t)
	want := []string{
		api.OAuthInvalidRequest, api.OAuthInvalidClient, api.OAuthInvalidGrant, api.OAuthUnsupportedGrantType,
		api.OAuthInvalidScope, api.OAuthTemporarilyUnavailable, api.OAuthServerError,
	}
	var got []string
	for _, v := range doc.Components.Schemas["OAuthError"].Value.Properties["error"].Value.Enum {
		got = append(got, v.(string))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("OAuthError codes in the document %v, in api %v", got, want)
	}
	for _, path := range []string{"/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		for code, ref := range doc.Paths.Find(path).Post.Responses.Map() {
			mt := ref.Value.Content.Get("application/json")
			if mt == nil || code == "200" || code == "413" {
				continue // 413 is the HTTP layer's, in keygate's shape
			}
			parts := mt.Schema.Value.AllOf
			if len(parts) != 2 || parts[0].Ref != "#/components/schemas/OAuthError" {
				t.Errorf("%s %s: not an OAuthError", path, code)
				continue
			}
			for _, v := range parts[1].Value.Properties["error"].Value.Enum {
				if !slices.Contains(want, v.(string)) {
					t.Errorf("%s %s: code %v is not one of api's", path, code, v)
				}
			}
		}
	}
}

// TestTimestampSchemaMatchesTimeLayout: what api.Time writes matches the
// document's Timestamp pattern and format, whatever the time.
func TestTimestampSchemaMatchesTimeLayout(t *testing.T) {
	doc := loadDocument(t)
	s := doc.Components.Schemas["Timestamp"].Value
	pattern := regexp.MustCompile(s.Pattern)
	for _, at := range []time.Time{
		time.Date(2026, 6, 26, 7, 56, 42, 199_654_321, time.FixedZone("CEST", 7200)),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.UnixMilli(0),
	} {
		v := api.NewTime(at).String()
		if !pattern.MatchString(v) {
			t.Errorf("%s does not match the Timestamp pattern %s", v, s.Pattern)
		}
		if err := s.VisitJSON(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}
