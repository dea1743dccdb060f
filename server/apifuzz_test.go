package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"keygate/api"
	"keygate/keys"
	"keygate/server"
)

// The API fuzzer: requests generated from the OpenAPI document, valid and
// mutated, against the whole stack (gateway.New over SQLite), each
// response held to the document. It fails on a response the document
// does not describe, on any 5xx, and on a well-formed request the document
// accepts that the server refuses as malformed (400, 413, 415). The input
// is a program: a byte string whose bytes make every choice, so that the
// fuzzing engine can steer it and a failing input replays exactly.

// FuzzAPI is the fuzz target; its seeds (one per documented operation and
// a few random programs) also run as plain tests.
func FuzzAPI(f *testing.F) {
	fz := newAPIFuzzer(f)
	for _, seed := range apiFuzzSeeds(len(fz.ops)) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, program []byte) {
		fz.run(t, program)
	})
}

// TestAPIFuzzCases runs a few hundred generated requests without the
// fuzzing engine, and checks that the generator reaches every operation,
// valid requests included.
func TestAPIFuzzCases(t *testing.T) {
	t.Parallel()
	fz := newAPIFuzzer(t)
	for _, program := range apiFuzzSeeds(len(fz.ops)) {
		fz.run(t, program)
	}
	rng := rand.New(rand.NewPCG(14, 2026))
	for range 60 {
		program := make([]byte, 320)
		for i := range program {
			program[i] = byte(rng.Uint32())
		}
		fz.run(t, program)
	}
	if fz.requests < 300 {
		t.Errorf("only %d requests", fz.requests)
	}
	for _, op := range fz.ops {
		if op.succeeded == 0 {
			t.Errorf("%s %s: no request succeeded in %d (statuses %v): the generator cannot make a valid one", op.method, op.template, op.sent, op.statuses)
		}
	}
	all := fz.statuses
	statuses := slices.Sorted(maps.Keys(all))
	for _, want := range []int{200, 201, 204, 304, 400, 401, 403, 404, 405, 409, 413, 415, 429} {
		if all[want] == 0 {
			t.Errorf("no %d among %d requests: the generator misses a part of the document", want, fz.requests)
		}
	}
	t.Logf("%d requests; statuses %v", fz.requests, func() (out []string) {
		for _, s := range statuses {
			out = append(out, fmt.Sprintf("%d×%d", s, all[s]))
		}
		return out
	}())
}

// apiFuzzSeeds are programs that start with each operation in turn, then
// go on at random.
func apiFuzzSeeds(ops int) [][]byte {
	rng := rand.New(rand.NewPCG(7, 7))
	var seeds [][]byte
	for i := range ops {
		seed := []byte{5, 2, byte(i)}
		for range 96 {
			seed = append(seed, byte(rng.Uint32()))
		}
		seeds = append(seeds, seed)
	}
	return seeds
}

// fuzzBodyLimit is the fuzzing gateway's server.max_body_bytes: small, so
// that oversized bodies are cheap, yet above the largest valid body (two
// 200-character strings of six-byte escapes).
const fuzzBodyLimit = 4096

// apiFuzzer is one gateway and the document's operations.
type apiFuzzer struct {
	e        *env
	c        *contract
	ops      []*fuzzOp
	programs int
	requests int
	statuses map[int]int
}

// fuzzOp is a documented operation and what the fuzzer saw of it.
type fuzzOp struct {
	method, template string
	op               *openapi3.Operation
	params           []*openapi3.Parameter
	methods          []string // all the methods of its path
	sent, succeeded  int
	statuses         map[int]int
}

func newAPIFuzzer(tb testing.TB) *apiFuzzer {
	e := newEnv(tb, withMaxBody(fuzzBodyLimit), withPublicURL(), withLeakHMAC(), withLimits(server.RateLimits{
		LoginFailuresPerMinute: 2, LoginPerKeyPerMinute: 2, RefreshPerFamilyPerMinute: 1, APIPerMinute: 3,
	}))
	c := mustContract(tb)
	return &apiFuzzer{e: e, c: c, ops: documentedOps(c), statuses: map[int]int{}}
}

// documentedOps lists the document's operations, path by path.
func documentedOps(c *contract) []*fuzzOp {
	var ops []*fuzzOp
	for _, p := range c.Paths {
		for _, m := range p.Methods() {
			op := p.Item.GetOperation(m)
			o := &fuzzOp{method: m, template: p.Template, op: op, methods: p.Methods(), statuses: map[int]int{}}
			for _, ref := range slices.Concat(p.Item.Parameters, op.Parameters) {
				o.params = append(o.params, ref.Value)
			}
			ops = append(ops, o)
		}
	}
	return ops
}

// run plays one program on principals of its own: two partners, each with
// a company, logged in, and a client address of its own, so that a program
// depends on no other and replays alone exactly as it ran.
func (fz *apiFuzzer) run(t *testing.T, program []byte) {
	ctx := context.Background()
	e := fz.e
	fz.programs++
	e.clock.Advance(time.Minute) // every rate-limit bucket refills
	r := &fuzzRun{
		t: t, fz: fz, in: &chooser{data: program}, pool: map[string][]string{}, owners: map[string]string{},
		addr: fmt.Sprintf("198.18.%d.%d:4%04d", fz.programs/250%250, fz.programs%250+1, fz.programs%10000),
	}
	// Partner A has an active company with an externalId, partner B a
	// company it has disabled: conflicts, refusals and other partners'
	// companies are a step away.
	for i, name := range []string{"Fuzz Partner A", "Fuzz Partner B"} {
		p, pk, err := e.keys.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: name})
		if err != nil {
			t.Fatalf("CreatePartner: %v", err)
		}
		ext := fmt.Sprintf("crm-%d", fz.programs)
		co, ck, err := e.keys.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: name + " Co", ExternalID: &ext})
		if err != nil {
			t.Fatalf("CreateCompany: %v", err)
		}
		r.remember("id", p.ID, co.ID)
		r.remember("keyId", pk.ID, ck.ID)
		r.remember("apiKey", pk.APIKey.Reveal(), ck.APIKey.Reveal())
		r.remember("externalId", ext)
		for j, key := range []keys.NewKey{pk, ck} {
			pair, err := e.tokens.Login(ctx, key.APIKey.Reveal(), "192.0.2.1")
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			client := []string{p.ID, co.ID}[j] + "\x00" + key.APIKey.Reveal()
			r.remember("client", client)
			r.remember("jwt", pair.JWT.Reveal())
			r.remember("refreshToken", pair.RefreshToken.Reveal())
			r.owners[pair.RefreshToken.Reveal()] = client
		}
		if i == 1 {
			if err := e.keys.DisableCompany(ctx, keys.Operator, p.ID, co.ID); err != nil {
				t.Fatalf("DisableCompany: %v", err)
			}
		}
	}
	steps := 1 + r.in.intn(24)
	for i := 0; i < steps && (i == 0 || len(r.in.data) > 0); i++ {
		switch k := r.in.intn(20); {
		case k == 0:
			r.advanceClock()
		case k == 1:
			r.undocumented()
		default:
			r.operation(fz.ops[r.in.intn(len(fz.ops))])
		}
	}
	e.recorder.Flush(ctx)
}

// chooser makes choices from the program's bytes; once they run out
// every choice is the first (0: the valid, unmutated one).
type chooser struct{ data []byte }

func (c *chooser) next() byte {
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return b
}

// intn returns a choice in [0, n).
func (c *chooser) intn(n int) int {
	switch {
	case n <= 1:
		return 0
	case n <= 256:
		return int(c.next()) % n
	}
	return (int(c.next())<<8 | int(c.next())) % n
}

// oneIn is true with odds 1 in n (never when the bytes have run out).
func (c *chooser) oneIn(n int) bool { return c.intn(n) == n-1 }

func pick[T any](c *chooser, xs []T) T { return xs[c.intn(len(xs))] }

// fuzzRun is one program's state.
type fuzzRun struct {
	t    *testing.T
	fz   *apiFuzzer
	in   *chooser
	addr string
	// pool holds values the API handed out, by member name, most recent
	// last: valid requests reuse them (ids, keys, tokens, cursors).
	pool map[string][]string
	// owners are the OAuth clients ("id\x00secret", as in the "client"
	// pool) of the refresh tokens the run started with.
	owners map[string]string
}

// aliases name the pool a parameter or member draws from when the values
// that fit it come under another name.
var aliases = map[string]string{
	"cursor": "nextCursor", "If-None-Match": "ETag",
	"client_id": "id", "client_secret": "apiKey", "refresh_token": "refreshToken",
}

// poolsOf are the pools besides its own a response member's values join:
// the OAuth face's snake_case tokens are the JSON face's, and any token
// is one to introspect or revoke.
var poolsOf = map[string][]string{
	"access_token": {"jwt", "token"}, "refresh_token": {"refreshToken", "token"},
	"jwt": {"token"}, "refreshToken": {"token"},
}

func (r *fuzzRun) remember(name string, values ...string) {
	for _, also := range poolsOf[name] {
		r.remember(also, values...)
	}
	for _, v := range values {
		vs := slices.DeleteFunc(r.pool[name], func(s string) bool { return s == v })
		if len(vs) >= 24 {
			vs = vs[1:]
		}
		r.pool[name] = append(vs, v)
	}
}

// learn remembers every string member of a JSON response, walking objects
// in member order so that a program replays identically.
func (r *fuzzRun) learn(rec *httptest.ResponseRecorder) {
	if etag := rec.Header().Get("ETag"); etag != "" {
		r.remember("ETag", etag)
	}
	var v any
	if json.Unmarshal(rec.Body.Bytes(), &v) != nil {
		return
	}
	var walk func(name string, v any)
	walk = func(name string, v any) {
		switch v := v.(type) {
		case string:
			if name != "" {
				r.remember(name, v)
			}
		case []any:
			for _, x := range v {
				walk(name, x)
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(k, v[k])
			}
		}
	}
	walk("", v)
}

// advanceClock lets time pass: access tokens expire, refresh tokens age.
func (r *fuzzRun) advanceClock() {
	r.fz.e.clock.Advance(pick(r.in, []time.Duration{time.Second, 11 * time.Second, time.Minute, 16 * time.Minute, 25 * time.Hour}))
}

// operation sends one request for a documented operation. clean stays true
// while every part is generated to be well-formed; the document then
// decides whether the request is valid.
func (r *fuzzRun) operation(o *fuzzOp) {
	clean := true
	path := o.template
	query := url.Values{}
	h := http.Header{}
	for _, p := range o.params {
		v, ok := r.param(p)
		clean = clean && ok
		switch p.In {
		case openapi3.ParameterInPath:
			path = strings.Replace(path, "{"+p.Name+"}", url.PathEscape(v), 1)
		case openapi3.ParameterInQuery:
			if v != "" || !ok {
				query.Add(p.Name, v)
			}
			if r.in.oneIn(12) { // the parameter twice: the server reads the first
				query.Add(p.Name, pick(r.in, []string{v, "7", "x", ""}))
				clean = false
			}
		case openapi3.ParameterInHeader:
			if v != "" {
				h.Set(p.Name, v)
			}
		}
	}
	oauth := oauthClient(o.op)
	if !oauth {
		r.credential(h, o.op.Security != nil && len(*o.op.Security) > 0)
	}
	var body []byte
	switch {
	case oauth:
		var ok bool
		body, ok = r.oauthRequest(o.op.RequestBody.Value, h)
		clean = clean && ok
	case o.op.RequestBody != nil:
		var ok bool
		body, ok = r.body(o.op.RequestBody.Value, h)
		clean = clean && ok
	case r.in.oneIn(10): // a body where none is expected is ignored, unless too large
		body = []byte(pick(r.in, []string{`{"name":"x"}`, "junk", strings.Repeat("x", fuzzBodyLimit+1)}))
		h.Set("Content-Type", "application/json")
		clean = false
	}
	if o.template == leakedPath {
		r.signReport(h, body) // as its reporter would, or now and then not
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	rec := r.send(o.method, target, h, body, clean)
	o.sent++
	o.statuses[rec.Code]++
	if rec.Code < 400 {
		o.succeeded++
	}
}

// param returns a value for a parameter ("" to leave an optional one out)
// and whether it was made to be well-formed.
func (r *fuzzRun) param(p *openapi3.Parameter) (string, bool) {
	s := p.Schema.Value
	if !p.Required && r.in.oneIn(3) {
		return "", true
	}
	if r.in.oneIn(6) {
		return r.mutantParam(p.Name, s), false
	}
	v, ok := r.valid(p.Name, s)
	switch v := v.(type) {
	case nil:
		return "", ok
	case string:
		return v, ok
	case int:
		return strconv.Itoa(v), ok
	}
	return fmt.Sprint(v), false
}

// mutantParam is a parameter value likely to be refused.
func (r *fuzzRun) mutantParam(name string, s *openapi3.Schema) string {
	switch {
	case s.Type.Is(openapi3.TypeInteger):
		var edges []string // just outside the document's bounds
		if s.Min != nil {
			edges = append(edges, strconv.Itoa(int(*s.Min)-1))
		}
		if s.Max != nil {
			edges = append(edges, strconv.Itoa(int(*s.Max)+1), strconv.Itoa(int(*s.Max)*2))
		}
		if len(edges) > 0 && r.in.oneIn(2) {
			return pick(r.in, edges)
		}
		return pick(r.in, []string{"-1", "abc", "1.5", " 5", "+5", "05", "99999999999999999999", "1e2", "0x10"})
	case name == "cursor":
		return pick(r.in, []string{"YzEuMA", "YzEuLTE", "YzIuNQ", "!!", "YzEuMQ==", "eA", strings.Repeat("Y", 300)})
	}
	var other []string
	for _, k := range slices.Sorted(maps.Keys(r.pool)) {
		other = append(other, r.pool[k]...)
	}
	cands := []string{"", " ", "..", ".", "%", "com_", "key_", "com_" + strings.Repeat("0", 22), "key_" + strings.Repeat("z", 23),
		"com_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
		strings.Repeat("a", 400), "\x00", "a/b", "*", r.randomString(1, 30)}
	if len(other) > 0 && r.in.oneIn(2) {
		return pick(r.in, other) // a value of another kind: a key id as a company id, a token as a name
	}
	if v, _ := r.validString(name, s); v != "" && r.in.oneIn(2) { // a valid value, one character off
		return pick(r.in, []string{v[:len(v)-1], v + "a", "x" + v[1:], strings.ToUpper(v), v + " "})
	}
	return pick(r.in, cands)
}

// valid returns a value that satisfies s, for a member or parameter named
// name, and false if it could not make one it is sure of.
func (r *fuzzRun) valid(name string, s *openapi3.Schema) (any, bool) {
	if s.Nullable && r.in.oneIn(6) {
		return nil, true
	}
	if len(s.OneOf) > 0 {
		return r.valid(name, pick(r.in, s.OneOf).Value)
	}
	if len(s.Enum) > 0 {
		return pick(r.in, s.Enum), true
	}
	switch {
	case s.Type.Is(openapi3.TypeInteger):
		lo, hi := 0, 1000
		if s.Min != nil {
			lo = int(*s.Min)
		}
		if s.Max != nil {
			hi = int(*s.Max)
		}
		return pick(r.in, []int{lo, lo + 1, (lo + hi) / 2, hi - 1, hi}), true
	case s.Type.Is(openapi3.TypeObject):
		obj := map[string]any{}
		ok := true
		for _, prop := range slices.Sorted(maps.Keys(s.Properties)) {
			if !slices.Contains(s.Required, prop) && r.in.oneIn(2) {
				continue
			}
			v, vok := r.valid(prop, s.Properties[prop].Value)
			obj[prop], ok = v, ok && vok
		}
		return obj, ok
	case s.Type.Is(openapi3.TypeString):
		return r.validString(name, s)
	case s.Type.Is(openapi3.TypeArray) && s.Items != nil && name == "":
		// A body that is an array (members that are arrays stay unmade,
		// their values being the server's to judge).
		items := make([]any, r.in.intn(3))
		ok := true
		for i := range items {
			v, vok := r.valid(name, s.Items.Value)
			items[i], ok = v, ok && vok
		}
		return items, ok
	}
	return nil, false
}

// validString draws on the values the API handed out that fit s, then on
// the document's example, then makes one up where s has no pattern.
func (r *fuzzRun) validString(name string, s *openapi3.Schema) (string, bool) {
	from := name
	if a, ok := aliases[name]; ok {
		from = a
	}
	var fits []string
	for _, v := range r.pool[from] {
		if s.VisitJSON(v) == nil {
			fits = append(fits, v)
		}
	}
	_, semantic := aliases[name]
	if len(fits) > 0 && (s.Pattern != "" || semantic || !r.in.oneIn(3)) {
		return pick(r.in, fits), true
	}
	if ex, ok := s.Example.(string); ok && s.Pattern != "" && !semantic && s.VisitJSON(ex) == nil {
		return ex, true
	}
	if s.Pattern != "" || semantic {
		return r.randomString(1, 20), false // nothing that surely fits
	}
	lo, hi := int(s.MinLength), 40
	if s.MaxLength != nil {
		hi = int(*s.MaxLength)
	}
	return r.randomString(lo, hi), true
}

// runes are characters that have broken JSON, UTF-8 and SQL handling
// elsewhere.
var runes = []rune("aZ09 _-.\"\\/<>&'%\x00\x01\t\n\u007f\u00e9\u00fc\u65e5\u672c\U0001F642\u202e\u200b\u2028\ufeff\ufffd")

// randomString has between lo and hi runes (inclusive), edges favoured.
func (r *fuzzRun) randomString(lo, hi int) string {
	n := pick(r.in, []int{lo, lo + 1, hi, hi - 1, lo + r.in.intn(hi-lo+1)})
	n = max(lo, min(n, hi))
	var b strings.Builder
	for range n {
		b.WriteRune(pick(r.in, runes))
	}
	return b.String()
}

// credential sets the access token, or something else, in the headers.
func (r *fuzzRun) credential(h http.Header, secured bool) {
	jwt := "eyJhbGciOiJub25lIn0.e30.x"
	if jwts := r.pool["jwt"]; len(jwts) > 0 {
		jwt = jwts[0] // the first partner's, which owns most of the companies in play
		if r.in.oneIn(2) {
			jwt = pick(r.in, jwts)
		}
	}
	if !secured {
		if r.in.oneIn(8) {
			h.Set("R-Auth", jwt) // ignored
		}
		return
	}
	switch r.in.intn(16) {
	default:
		h.Set("R-Auth", jwt)
	case 9, 10:
		h.Set("Authorization", pick(r.in, []string{"Bearer ", "bearer ", "BEARER  "})+jwt)
	case 11:
	case 12:
		h.Set("R-Auth", pick(r.in, []string{jwt[:len(jwt)-1], jwt + "x", "", " ", "eyJ.eyJ.x", r.randomString(1, 10)}))
	case 13:
		h.Add("R-Auth", jwt)
		h.Add("R-Auth", jwt)
	case 14:
		h.Set("Authorization", pick(r.in, []string{"Basic " + jwt, "Bearer", "Bearer ", jwt, "Token " + jwt}))
	case 15:
		h.Set("R-Auth", "")
		h.Set("Authorization", "Bearer "+jwt)
	}
}

// body makes a request body for rb, valid or mutated, and sets its
// Content-Type; false if anything in it was mutated.
func (r *fuzzRun) body(rb *openapi3.RequestBody, h http.Header) ([]byte, bool) {
	s := rb.Content.Get("application/json").Schema.Value
	v, ok := r.valid("", s)
	obj, _ := v.(map[string]any)
	if r.in.oneIn(3) {
		ok = false
		if items, isArray := v.([]any); isArray {
			v = r.mutateItems(items, s)
		} else {
			v = r.mutateValue(obj, s)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatalf("marshal %v: %v", v, err)
	}
	if r.in.oneIn(4) {
		ok = false
		b = r.mutateText(b)
	}
	if r.in.oneIn(8) {
		ok = false
		if ct := pick(r.in, []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset",
			"application/jsonx", "application/problem+json", "json"}); ct != "" {
			h.Set("Content-Type", ct)
		}
	} else {
		h.Set("Content-Type", pick(r.in, []string{"application/json", "application/json; charset=utf-8", "Application/JSON"}))
	}
	return b, ok
}

// oauthRequest makes an OAuth endpoint's form body and its client
// authentication: in the form (client_secret_post) or in Basic, mostly a
// client's own id and secret (for a refresh token, often its owner's),
// sometimes another's, a malformed header, none, or both methods at once,
// which the server refuses and the document cannot see. False if
// anything was mutated.
func (r *fuzzRun) oauthRequest(rb *openapi3.RequestBody, h http.Header) ([]byte, bool) {
	s := rb.Content.Get(formType).Schema.Value
	v, ok := r.valid("", s)
	obj, _ := v.(map[string]any)
	client := pick(r.in, r.pool["client"])
	if owner, known := r.owners[fmt.Sprint(obj["refresh_token"])]; known && r.in.oneIn(2) {
		client = owner
	}
	id, secret, _ := strings.Cut(client, "\x00")
	switch r.in.intn(8) {
	case 0, 1, 2: // client_secret_post
		obj["client_id"], obj["client_secret"] = id, secret
	case 3, 4, 5: // client_secret_basic, naming the client in the form or not
		delete(obj, "client_secret")
		if r.in.oneIn(2) {
			delete(obj, "client_id")
		} else {
			obj["client_id"] = id
		}
		h.Set("Authorization", basic(id, secret).Get("Authorization"))
	case 6: // whatever the schema gave, and perhaps a header of some kind
		if r.in.oneIn(2) {
			other, _, _ := strings.Cut(pick(r.in, r.pool["client"]), "\x00")
			h.Set("Authorization", pick(r.in, []string{
				basic(other, secret).Get("Authorization"), basic(id, secret+"x").Get("Authorization"), "Basic !!", "Basic " + base64.StdEncoding.EncodeToString([]byte(id)),
				"Bearer " + pick(r.in, r.pool["jwt"]), "basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret)),
			}))
		}
	default: // no client authentication
		delete(obj, "client_id")
		delete(obj, "client_secret")
	}
	if r.in.oneIn(3) {
		ok = false
		r.mutateForm(obj, s)
	}
	if auth := h.Get("Authorization"); auth != "" {
		if _, both := obj["client_secret"]; both {
			ok = false // two methods: 400
		}
		if named, has := obj["client_id"]; has && named != id {
			ok = false // two clients: 400
		}
	}
	b := encodeForm(obj)
	if r.in.oneIn(6) {
		ok = false
		b = r.mutateFormText(b)
	}
	if r.in.oneIn(8) {
		ok = false
		if ct := pick(r.in, []string{"", "application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded; charset"}); ct != "" {
			h.Set("Content-Type", ct)
		}
	} else {
		h.Set("Content-Type", pick(r.in, []string{formType, formType + "; charset=utf-8", "Application/X-WWW-Form-Urlencoded"}))
	}
	return b, ok
}

// mutateForm breaks a valid form: a parameter missing, empty, too long,
// repeated (which the document cannot see) or made up, or an unknown one
// (which both ignore).
func (r *fuzzRun) mutateForm(obj map[string]any, s *openapi3.Schema) {
	names := slices.Sorted(maps.Keys(obj))
	if len(names) == 0 {
		names = []string{"grant_type", "token"}
	}
	name := pick(r.in, names)
	switch r.in.intn(6) {
	case 0:
		delete(obj, name)
	case 1:
		obj[name] = ""
	case 2:
		obj[name] = strings.Repeat("a", 101+r.in.intn(300))
	case 3:
		obj[name] = []string{fmt.Sprint(obj[name]), pick(r.in, []string{fmt.Sprint(obj[name]), "x", ""})}
	case 4:
		obj[pick(r.in, []string{"extra", "Grant_type", "TOKEN", "client_id ", ""})] = "x"
	default:
		obj[name] = r.randomString(0, 40)
	}
}

// mutateFormText breaks a form's text.
func (r *fuzzRun) mutateFormText(b []byte) []byte {
	switch r.in.intn(6) {
	case 0:
		return b[:r.in.intn(len(b)+1)] // truncated
	case 1:
		return append(b, pick(r.in, []string{"%", "%zz", ";x=1", "&%gg=1"})...)
	case 2:
		return bytes.ToUpper(b)
	case 3:
		return bytes.Repeat([]byte("a"), fuzzBodyLimit+1+r.in.intn(100)) // over the limit
	case 4:
		return slices.Concat(b, []byte("&"), b) // every parameter twice
	}
	return []byte(pick(r.in, []string{"", "=", "&&", `{"grant_type":"client_credentials"}`, "grant_type"}))
}

// mutateItems breaks a valid array body in one way the document can see:
// one more item, broken as mutateValue breaks an object, more items than
// the document allows, or no array at all.
func (r *fuzzRun) mutateItems(items []any, s *openapi3.Schema) any {
	item, _ := r.valid("", s.Items.Value)
	switch r.in.intn(4) {
	case 0:
		if s.MaxItems != nil {
			return slices.Repeat([]any{item}, int(*s.MaxItems)+1)
		}
	case 1:
		return pick(r.in, []any{map[string]any{}, "x", 7, nil, true})
	}
	if obj, isObject := item.(map[string]any); isObject {
		return append(items, r.mutateValue(obj, s.Items.Value))
	}
	return append(items, map[string]any{"x": 7})
}

// mutateValue breaks a valid body in one way the document can see.
func (r *fuzzRun) mutateValue(obj map[string]any, s *openapi3.Schema) any {
	props := slices.Sorted(maps.Keys(s.Properties))
	if len(props) == 0 { // not an object: a body of another type
		return pick(r.in, []any{"x", 7, nil, true, map[string]any{}, []any{7}})
	}
	prop := pick(r.in, props)
	switch r.in.intn(9) {
	case 7, 8:
		ps := s.Properties[prop].Value // a length just outside the document's bounds
		n := int(ps.MinLength) - 1
		if ps.MaxLength != nil && (n < 0 || r.in.oneIn(2)) {
			n = int(*ps.MaxLength) + 1
		}
		obj[prop] = strings.Repeat(pick(r.in, []string{"a", "\u00e9", "\U0001F642"}), max(n, 0))
	case 0:
		if len(s.Required) > 0 {
			delete(obj, pick(r.in, s.Required)) // a required member missing
		} else {
			obj[prop] = nil
		}
	case 1:
		obj[prop] = pick(r.in, []any{42, true, []any{}, map[string]any{}, nil, 1.5, math.Copysign(0, -1)}) // wrongly typed
	case 2:
		obj[pick(r.in, []string{"extra", "partnerId", strings.ToUpper(prop), strings.ToUpper(prop[:1]) + prop[1:], "", prop + " "})] = "x"
	case 3:
		obj[prop] = "" // empty
	case 4:
		n := 1000 // too long: just over the document's bound, or far over
		if ps := s.Properties[prop].Value; ps.MaxLength != nil {
			n = int(*ps.MaxLength) + pick(r.in, []int{1, 2, 50})
		}
		obj[prop] = strings.Repeat(pick(r.in, []string{"a", "\u00e9", "\U0001F642"}), n)
	case 5:
		return pick(r.in, []any{[]any{obj}, "x", 7, nil, true, []any{}, map[string]any{}})
	case 6:
		obj[prop] = r.randomString(0, 300)
	}
	return obj
}

// mutateText breaks a body's JSON text in a way a schema cannot see.
func (r *fuzzRun) mutateText(b []byte) []byte {
	switch r.in.intn(10) {
	case 0:
		return b[:r.in.intn(len(b))] // truncated
	case 1:
		if len(b) > 2 && b[0] == '{' && b[1] != '}' { // every member twice
			return slices.Concat(b[:len(b)-1], []byte(","), b[1:])
		}
		return b
	case 2:
		return append([]byte("\xef\xbb\xbf"), b...) // a byte order mark
	case 3:
		return append(b, pick(r.in, []string{" x", "{}", "\x00", "\n,"})...)
	case 4:
		if i := bytes.IndexByte(b, ':'); i > 0 && i+2 < len(b) && b[i+1] == '"' { // invalid UTF-8 in a value
			return slices.Concat(b[:i+2], []byte("\xff\xfe"), b[i+2:])
		}
		return append(b, 0xff)
	case 5:
		i := r.in.intn(len(b) + 1) // a byte flipped
		if i < len(b) {
			b = slices.Clone(b)
			b[i] ^= byte(1 + r.in.intn(255))
		}
		return b
	case 6:
		return bytes.Repeat([]byte(" "), fuzzBodyLimit+1-len(b)+r.in.intn(100)) // over the limit
	case 7:
		depth := 1 + r.in.intn(fuzzBodyLimit/2-len(b)/2)
		return []byte(`{"a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
	case 8:
		return bytes.ToUpper(b)
	}
	return []byte(pick(r.in, []string{"", "null", "[]", "{", `{"":""}`, "\"{}\"", "{\"a\":1}"}))
}

// undocumented sends a method a documented path does not take, or a path
// the document does not have.
func (r *fuzzRun) undocumented() {
	o := pick(r.in, r.fz.ops)
	path := o.template
	for _, p := range o.params {
		if p.In == openapi3.ParameterInPath {
			v, _ := r.param(p)
			path = strings.Replace(path, "{"+p.Name+"}", url.PathEscape(v), 1)
		}
	}
	method := o.method
	switch r.in.intn(3) {
	case 0:
		others := slices.DeleteFunc([]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"},
			func(m string) bool { return slices.Contains(o.methods, m) })
		method = pick(r.in, others)
	case 1:
		path += pick(r.in, []string{"/", "/x", "/..", "//", ".json", "%2F"})
	default:
		path = pick(r.in, []string{"/", "/api", "/api/v1", "/api/v2/auth/login", "/API/v1/auth/me", "//health", "/health/", "/api/v1/companies/", "/api/v1/auth"})
	}
	h := http.Header{}
	r.credential(h, true)
	var body []byte
	if r.in.oneIn(3) {
		body = []byte(`{"name":"x"}`)
		h.Set("Content-Type", "application/json")
	}
	r.send(method, path, h, body, false)
}

// send serves one request and holds the exchange to the document.
func (r *fuzzRun) send(method, target string, h http.Header, body []byte, clean bool) *httptest.ResponseRecorder {
	r.t.Helper()
	r.fz.requests++
	rec := probe(r.t, r.fz.e.handler, r.fz.c, method, target, h, body, r.addr, clean)
	r.fz.statuses[rec.Code]++
	r.learn(rec)
	return rec
}

// probe serves one generated request and fails t on a 5xx, on a response
// the document does not describe, and, for a clean request (well-formed
// JSON in a JSON media type, and no value whose validity the document
// cannot state, such as a made-up cursor), on a refusal as malformed (400,
// 413, 415) of a request the document accepts.
func probe(t *testing.T, h http.Handler, c *contract, method, target string, header http.Header, body []byte, addr string, clean bool) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if len(body) == 0 {
		req = httptest.NewRequest(method, target, nil)
	}
	for k, vs := range header {
		req.Header[k] = slices.Clone(vs)
	}
	req.RemoteAddr = addr
	var read bytes.Buffer
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = readBody{ReadCloser: req.Body, Into: &read}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	v := c.Check(context.Background(), exchange{Req: req, ReqBody: read.Bytes(), Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()})
	what := func() string {
		return fmt.Sprintf("%s %s\nheaders %v\nbody %.300q\n→ %d %.300s", method, target, header, body, rec.Code, rec.Body)
	}
	switch {
	case rec.Code >= 500:
		t.Errorf("a server error:\n%s", what())
	case v.Response != nil:
		t.Errorf("the response contradicts api/openapi.json: %v\n%s", v.Response, what())
	case clean && v.Request == nil && refusedAsMalformed(rec):
		t.Errorf("the document accepts this well-formed request; the server refused it:\n%s", what())
	}
	return rec
}

// refusedAsMalformed reports whether the server refused a request for
// its form: a 413 or 415, or a 400 other than the OAuth token endpoint's
// invalid_grant, which refuses a well-formed refresh token that is no
// longer good (as the JSON face answers 401), and its invalid_scope for a
// well-formed scope the client's key does not hold (the JSON face's 403).
func refusedAsMalformed(rec *httptest.ResponseRecorder) bool {
	switch rec.Code {
	case http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return true
	case http.StatusBadRequest:
		var body struct {
			Error       string
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		notHeld := body.Error == api.OAuthInvalidScope && strings.HasSuffix(body.Description, " is not allowed")
		return body.Error != api.OAuthInvalidGrant && !notHeld
	}
	return false
}
