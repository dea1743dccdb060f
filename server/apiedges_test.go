package server_test

import (
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
// which the random fuzzer (FuzzAPI) only reaches by luck.
func TestAPIEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
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
	sent   int
}

func newEdgeSweep(t *testing.T, e *env, c *contract, o *fuzzOp) *edgeSweep {
	ctx := t.Context()
	p, pk, err := e.keys.CreatePartner(ctx, keys.Operator, "Edge Partner")
	if err != nil {
		t.Fatal(err)
	}
	co, _, err := e.keys.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: "Edge Co"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := e.keys.CreateKey(ctx, keys.Operator, keys.CompanyOwner(p.ID, co.ID))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := e.tokens.Login(ctx, pk.APIKey.Reveal(), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return &edgeSweep{t: t, e: e, c: c, o: o, jwt: pair.JWT.Reveal(), values: map[string]string{
		"id": co.ID, "keyId": k.ID, "apiKey": pk.APIKey.Reveal(), "refreshToken": pair.RefreshToken.Reveal(),
	}}
}

// edgeRequest is one request of a sweep.
type edgeRequest struct {
	params map[string]string // by name; a missing one is left out
	body   any               // marshalled; noBody when the operation takes none
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

func (s *edgeSweep) bodySchema() *openapi3.Schema {
	if s.o.op.RequestBody == nil {
		return nil
	}
	return s.o.op.RequestBody.Value.Content.Get("application/json").Schema.Value
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
	return strings.Repeat("a", max(1, int(schema.MinLength)))
}

func (s *edgeSweep) baseline() edgeRequest {
	r := edgeRequest{params: map[string]string{}, body: noBody, header: http.Header{}, clean: true}
	for _, p := range s.o.params {
		if _, ok := s.values[p.Name]; ok || p.Required {
			r.params[p.Name] = fmt.Sprint(s.sample(p.Name, p.Schema.Value, p.Example))
		}
	}
	if s.secured() {
		r.header.Set("R-Auth", s.jwt)
	}
	if schema := s.bodySchema(); schema != nil {
		obj := map[string]any{}
		for _, prop := range slices.Sorted(maps.Keys(schema.Properties)) {
			obj[prop] = s.sample(prop, schema.Properties[prop].Value, nil)
		}
		r.body, r.ctype = obj, "application/json"
	}
	return r
}

func (s *edgeSweep) run() {
	base := s.baseline()
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

	if schema := s.bodySchema(); schema != nil {
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

	if s.secured() {
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
	if r.body != noBody {
		if obj, ok := r.body.(map[string]any); ok {
			obj = maps.Clone(obj)
			for _, m := range uniqueMembers {
				if v, ok := obj[m].(string); ok && v == s.baseline().body.(map[string]any)[m] {
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
