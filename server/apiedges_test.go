package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"keygate/keys"
)

// TestAPIEdges walks every constraint the document puts on a request,
// operation by operation: each parameter's and body member's presence,
// type, nullability, length, range and pattern, unknown and case-variant
// members, the media type and the credential. For each it sends the
// request that just meets the constraint and the one that just breaks it,
// every other part valid, through probe: the document must describe every
// response, must not refuse a request the server accepts, and must not
// accept a well-formed request the server refuses as malformed. So the
// document is neither looser nor stricter than the server at any edge,
// which the random fuzzer (FuzzAPI) only reaches by luck. The OAuth
// endpoints' form bodies are swept the same way, each grant of the token
// endpoint on its own.
func TestAPIEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withPublicURL())
	c := mustContract(t)
	total := 0
	for _, o := range documentedOps(c) {
		t.Run(o.method+" "+o.template, func(t *testing.T) {
			s := newEdgeSweep(t, e, c, o)
			s.run()
			total += s.sent
		})
	}
	t.Logf("%d requests", total)
}

// opaqueParams are parameters whose valid values the document cannot
// state (a cursor is valid if the API returned it): a made-up value the
// document accepts may rightly be 400.
var opaqueParams = []string{"cursor"}

// uniqueMembers must differ from request to request (a second company with
// an externalId is 409): the sweep numbers each request's valid value.
var uniqueMembers = []string{"externalId"}

// edgeSweep sends one operation's edge cases, on a partner of its own.
type edgeSweep struct {
	t      *testing.T
	e      *env
	c      *contract
	o      *fuzzOp
	values map[string]string // valid values, by parameter or member name
	jwt    string            // the partner's access token
	base   edgeRequest       // the first valid request
	sent   int
}

func newEdgeSweep(t *testing.T, e *env, c *contract, o *fuzzOp) *edgeSweep {
	ctx := t.Context()
	p, pk, err := e.keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Edge Partner"})
	if err != nil {
		t.Fatal(err)
	}
	co, _, err := e.keys.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: "Edge Co"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := e.keys.CreateKey(ctx, keys.Operator, keys.CompanyOwner(p.ID, co.ID), keys.KeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := e.tokens.Login(ctx, pk.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return &edgeSweep{t: t, e: e, c: c, o: o, jwt: pair.JWT.Reveal(), values: map[string]string{
		"id": co.ID, "keyId": k.ID, "apiKey": pk.APIKey.Reveal(), "refreshToken": pair.RefreshToken.Reveal(),
		"client_id": p.ID, "client_secret": pk.APIKey.Reveal(), "refresh_token": pair.RefreshToken.Reveal(),
	}}
}

// edgeRequest is one request of a sweep.
type edgeRequest struct {
	params map[string]string // by name; a missing one is left out
	body   any               // marshalled; noBody when the operation takes none
	form   bool              // body is a form (or a rawBody), not JSON
	ctype  string
	header http.Header // credentials
	clean  bool
}

// noBody marks a request without a body.
var noBody = new(struct{})

func (r edgeRequest) clone() edgeRequest {
	r.params = maps.Clone(r.params)
	if obj, ok := r.body.(map[string]any); ok {
		r.body = maps.Clone(obj)
	}
	r.header = r.header.Clone()
	return r
}

func (s *edgeSweep) secured() bool { return s.o.op.Security != nil && len(*s.o.op.Security) > 0 }

// formType is the media type of the OAuth endpoints' bodies.
const formType = "application/x-www-form-urlencoded"

// oauthClient reports whether an operation authenticates OAuth clients:
// with HTTP Basic or, the empty alternative, in its form.
func oauthClient(op *openapi3.Operation) bool {
	if op.Security == nil {
		return false
	}
	for _, req := range *op.Security {
		if _, ok := req["ClientSecretBasic"]; ok {
			return true
		}
	}
	return false
}

// bodySchemas are the operation's body media type and the schemas a body
// may follow: the alternatives of a oneOf (the token endpoint's grants),
// each swept on its own, or the one schema.
func (s *edgeSweep) bodySchemas() (string, []*openapi3.Schema) {
	if s.o.op.RequestBody == nil {
		return "", nil
	}
	media := "application/json"
	mt := s.o.op.RequestBody.Value.Content.Get(media)
	if mt == nil {
		media, mt = formType, s.o.op.RequestBody.Value.Content.Get(formType)
	}
	schema := mt.Schema.Value
	if len(schema.OneOf) == 0 {
		return media, []*openapi3.Schema{schema}
	}
	var out []*openapi3.Schema
	for _, alt := range schema.OneOf {
		out = append(out, alt.Value)
	}
	return media, out
}

// sample is a valid value for a member or parameter: the sweep's own, the
// document's example, or the shortest string the schema allows.
func (s *edgeSweep) sample(name string, schema *openapi3.Schema, example any) any {
	if v, ok := s.values[name]; ok {
		return v
	}
	for _, ex := range []any{example, schema.Example} {
		if ex != nil && schema.VisitJSON(ex) == nil {
			return ex
		}
	}
	if len(schema.Enum) > 0 {
		return schema.Enum[0]
	}
	if schema.MaxLength != nil && *schema.MaxLength == 0 {
		return ""
	}
	return strings.Repeat("a", max(1, int(schema.MinLength)))
}

// baseline is a valid request, with body a valid one of the schema. An
// OAuth client authenticates in the form (client_secret_post), so that
// the body's members are swept with the credentials among them.
func (s *edgeSweep) baseline(media string, body *openapi3.Schema) edgeRequest {
	r := edgeRequest{params: map[string]string{}, body: noBody, header: http.Header{}, clean: true}
	for _, p := range s.o.params {
		if _, ok := s.values[p.Name]; ok || p.Required {
			r.params[p.Name] = fmt.Sprint(s.sample(p.Name, p.Schema.Value, p.Example))
		}
	}
	if s.secured() && !oauthClient(s.o.op) {
		r.header.Set("R-Auth", s.jwt)
	}
	if body != nil {
		obj := map[string]any{}
		for _, prop := range slices.Sorted(maps.Keys(body.Properties)) {
			obj[prop] = s.sample(prop, body.Properties[prop].Value, nil)
		}
		r.body, r.ctype, r.form = obj, media, media == formType
	}
	return r
}

func (s *edgeSweep) run() {
	media, bodies := s.bodySchemas()
	var first *openapi3.Schema
	if len(bodies) > 0 {
		first = bodies[0]
	}
	base := s.baseline(media, first)
	s.base = base
	s.send(base)

	for _, p := range s.o.params {
		for _, v := range paramEdges(p, base.params[p.Name]) {
			r := base.clone()
			if v == nil {
				delete(r.params, p.Name)
			} else {
				r.params[p.Name] = *v
			}
			r.clean = !slices.Contains(opaqueParams, p.Name)
			s.send(r)
		}
	}

	for _, schema := range bodies {
		if media == formType {
			s.formEdges(s.baseline(media, schema), schema)
			continue
		}
		obj := base.body.(map[string]any)
		for _, prop := range slices.Sorted(maps.Keys(schema.Properties)) {
			for _, v := range memberEdges(schema.Properties[prop].Value, obj[prop]) {
				r := base.clone()
				r.body.(map[string]any)[prop] = v
				s.send(r)
			}
			r := base.clone()
			delete(r.body.(map[string]any), prop)
			s.send(r)
			r = base.clone()
			r.body.(map[string]any)[strings.ToUpper(prop[:1])+prop[1:]] = obj[prop]
			s.send(r)
		}
		for _, extra := range []string{"extra", "", "id"} {
			r := base.clone()
			r.body.(map[string]any)[extra] = "x"
			s.send(r)
		}
		for _, root := range []any{nil, []any{}, []any{obj}, "x", 7, map[string]any{}} {
			r := base.clone()
			r.body = root
			s.send(r)
		}
		for _, ct := range []string{"Application/JSON", "application/json; charset=utf-8", "application/json ; charset=UTF-8"} {
			r := base.clone()
			r.ctype = ct
			s.send(r)
		}
		for _, ct := range []string{"", "text/plain", "application/json; charset", "application/jsonx", "application/problem+json"} {
			r := base.clone()
			r.ctype, r.clean = ct, false // the document cannot tell a malformed media type
			s.send(r)
		}
	}

	switch {
	case oauthClient(s.o.op):
		s.clientEdges(base)
	case s.secured():
		for _, h := range []http.Header{
			{},
			{"Authorization": {"Bearer " + s.jwt}},
			{"Authorization": {"bearer " + s.jwt}},
			{"Authorization": {"Basic " + s.jwt}},
			{"Authorization": {"Bearer"}},
			{"R-Auth": {s.jwt + "x"}},
			{"R-Auth": {s.jwt, s.jwt}},
			{"R-Auth": {""}, "Authorization": {"Bearer " + s.jwt}},
		} {
			r := base.clone()
			r.header = h
			s.send(r)
		}
	}
}

// formEdges sweeps a form body: each parameter's values at and past its
// bounds, missing, repeated (which the server refuses and the document
// cannot see) and spelt in another case (an unknown parameter, ignored),
// unknown parameters, bodies that are no form, and media types.
func (s *edgeSweep) formEdges(base edgeRequest, schema *openapi3.Schema) {
	s.send(base)
	obj := base.body.(map[string]any)
	for _, prop := range slices.Sorted(maps.Keys(schema.Properties)) {
		for _, v := range memberEdges(schema.Properties[prop].Value, obj[prop]) {
			if v, ok := v.(string); ok {
				r := base.clone()
				r.body.(map[string]any)[prop] = v
				s.send(r)
			}
		}
		r := base.clone()
		delete(r.body.(map[string]any), prop)
		s.send(r)
		r = base.clone()
		r.body.(map[string]any)[prop] = []string{fmt.Sprint(obj[prop]), fmt.Sprint(obj[prop])}
		r.clean = false
		s.send(r)
		r = base.clone()
		r.body.(map[string]any)[strings.ToUpper(prop[:1])+prop[1:]] = obj[prop]
		s.send(r)
	}
	for _, extra := range []string{"extra", "", "id", "scope "} {
		r := base.clone()
		r.body.(map[string]any)[extra] = "x"
		s.send(r)
	}
	for _, raw := range []string{"", "%zz", "a=%", "grant_type=client_credentials;x=1", "=", "&&", `{"grant_type":"client_credentials"}`} {
		r := base.clone()
		r.body = rawBody(raw)
		s.send(r)
	}
	for _, ct := range []string{"application/x-www-form-urlencoded; charset=utf-8", "Application/X-WWW-Form-Urlencoded"} {
		r := base.clone()
		r.ctype = ct
		s.send(r)
	}
	for _, ct := range []string{"", "text/plain", "application/json", "multipart/form-data", "application/x-www-form-urlencoded; charset"} {
		r := base.clone()
		r.ctype, r.clean = ct, false // the document cannot tell a malformed media type
		s.send(r)
	}
}

// clientEdges sweeps an OAuth client's authentication: Basic instead of
// the form's credentials, good and bad, and both at once, which the
// server refuses (400) and the document cannot see.
func (s *edgeSweep) clientEdges(base edgeRequest) {
	id, secret := s.values["client_id"], s.values["client_secret"]
	withoutSecret := func(keepID bool) edgeRequest {
		r := base.clone()
		if obj, ok := r.body.(map[string]any); ok {
			delete(obj, "client_secret")
			if !keepID {
				delete(obj, "client_id")
			}
		}
		return r
	}
	for _, tc := range []struct {
		header http.Header
		keepID bool
	}{
		{basic(id, secret), false},
		{basic(id, secret), true},
		{basic(id, secret+"x"), false},
		{basic(s.values["id"], secret), false},
		{basic(id, ""), false},
		{http.Header{"Authorization": {"Basic !!!"}}, false},
		{http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(id))}}, false},
		{http.Header{"Authorization": {"Bearer " + s.jwt}}, false},
		{http.Header{"R-Auth": {s.jwt}}, false},
		{http.Header{}, false},
	} {
		r := withoutSecret(tc.keepID)
		r.header = tc.header
		s.send(r)
	}
	r := base.clone() // both methods
	r.header, r.clean = basic(id, secret), false
	s.send(r)
	r = withoutSecret(false) // Basic naming one client, the form another
	r.body.(map[string]any)["client_id"] = s.values["id"]
	r.header, r.clean = basic(id, secret), false
	s.send(r)
}

// rawBody is a body sent as it is.
type rawBody string

// encodeForm encodes a form body: a list is the parameter repeated, nil
// leaves it out, anything else is its text.
func encodeForm(obj map[string]any) []byte {
	v := url.Values{}
	for name, x := range obj {
		switch x := x.(type) {
		case nil:
		case []string:
			v[name] = x
		default:
			v.Set(name, fmt.Sprint(x))
		}
	}
	return []byte(v.Encode())
}

// paramEdges are values at and past a parameter's bounds; nil leaves it out.
func paramEdges(p *openapi3.Parameter, valid string) []*string {
	ps := p.Schema.Value
	var out []string
	if ps.Type.Is(openapi3.TypeInteger) {
		for _, bound := range []*float64{ps.Min, ps.Max} {
			if bound != nil {
				n := int(*bound)
				out = append(out, strconv.Itoa(n-1), strconv.Itoa(n), strconv.Itoa(n+1))
			}
		}
		out = append(out, "abc", "1.5", "+5", " 5", "05", "1e2", "99999999999999999999")
	} else {
		out = append(out, "x", strings.Repeat("é", 300), "\x00", "a b")
		if valid != "" {
			out = append(out, valid+"x", valid[:len(valid)-1], strings.ToUpper(valid), " "+valid)
		}
	}
	out = append(out, "")
	ptrs := []*string{}
	if !p.Required {
		ptrs = append(ptrs, nil)
	}
	for _, v := range out {
		ptrs = append(ptrs, &v)
	}
	return ptrs
}

// memberEdges are values at and past a body member's bounds, and of other
// types.
func memberEdges(ps *openapi3.Schema, valid any) []any {
	out := []any{nil, 42, 1.5, true, []any{}, map[string]any{}, []any{valid}}
	if !ps.Type.Is(openapi3.TypeString) {
		return out
	}
	out = append(out, "", " ", "\x00", "\ufffd", "\u2028")
	for _, n := range []int{int(ps.MinLength) - 1, int(ps.MinLength)} {
		if n > 0 {
			out = append(out, strings.Repeat("é", n))
		}
	}
	if ps.MaxLength != nil {
		n := int(*ps.MaxLength)
		out = append(out, strings.Repeat("é", n), strings.Repeat("é", n+1), strings.Repeat("\U0001F642", n), strings.Repeat("a", n+1))
	}
	if v, ok := valid.(string); ok && v != "" {
		out = append(out, v+"x", v[:len(v)-1], strings.ToUpper(v), " "+v, v+"\n")
	}
	return out
}

// send sends one request of the sweep through probe.
func (s *edgeSweep) send(r edgeRequest) {
	s.t.Helper()
	s.sent++
	path := s.o.template
	query := url.Values{}
	h := r.header.Clone()
	for _, p := range s.o.params {
		v, ok := r.params[p.Name]
		switch {
		case p.In == openapi3.ParameterInPath:
			path = strings.Replace(path, "{"+p.Name+"}", url.PathEscape(v), 1)
		case !ok:
		case p.In == openapi3.ParameterInQuery:
			query.Set(p.Name, v)
		case p.In == openapi3.ParameterInHeader:
			h.Set(p.Name, v)
		}
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var body []byte
	switch {
	case r.body == noBody:
	case r.form:
		if raw, ok := r.body.(rawBody); ok {
			body = []byte(raw)
		} else {
			body = encodeForm(r.body.(map[string]any))
		}
		if r.ctype != "" {
			h.Set("Content-Type", r.ctype)
		}
	default:
		if obj, ok := r.body.(map[string]any); ok {
			obj = maps.Clone(obj)
			for _, m := range uniqueMembers {
				if v, ok := obj[m].(string); ok && v == s.base.body.(map[string]any)[m] {
					obj[m] = fmt.Sprintf("%s-%d", v, s.sent)
				}
			}
			r.body = obj
		}
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			s.t.Fatal(err)
		}
		if r.ctype != "" {
			h.Set("Content-Type", r.ctype)
		}
	}
	probe(s.t, s.e.handler, s.c, s.o.method, path, h, body, defaultAddr, r.clean)
}
