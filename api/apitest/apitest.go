// Package apitest holds HTTP exchanges with keygate to its OpenAPI
// document (api/openapi.json), with kin-openapi's validators: the check
// the server's tests apply to every response they see (their harness and
// fuzzer), and a validating http.RoundTripper for tests that talk to a
// running keygate. A response the document does not describe, or a
// success for a request it refuses, is a contradiction.
package apitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"keygate/api"
)

// Contract is the parsed document and the paths it describes, sorted.
type Contract struct {
	Doc   *openapi3.T
	Paths []Path
	// unrouted is what a path the document lacks may be answered with;
	// wrongMethod what a listed path may be answered with for a method it
	// does not list.
	unrouted, wrongMethod *openapi3.Operation
}

// Path is one path of the document.
type Path struct {
	Template string // as the document spells it: /api/v1/companies/{id}
	Item     *openapi3.PathItem
	segments []string // a segment "{name}" is a parameter
}

// Load parses and validates the document, once for the whole test binary.
func Load() (*Contract, error) { return loaded() }

var loaded = sync.OnceValues(func() (*Contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("loading api/openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("api/openapi.json: %w", err)
	}
	c := &Contract{Doc: doc}
	for tmpl, item := range doc.Paths.Map() {
		c.Paths = append(c.Paths, Path{Template: tmpl, segments: strings.Split(tmpl, "/"), Item: item})
	}
	slices.SortFunc(c.Paths, func(a, b Path) int { return strings.Compare(a.Template, b.Template) })
	responses := func(m map[int]string) *openapi3.Operation {
		op := &openapi3.Operation{Responses: openapi3.NewResponses()}
		for status, name := range m {
			ref := doc.Components.Responses[name]
			if ref == nil {
				panic("api/openapi.json has no response " + name)
			}
			op.Responses.Set(strconv.Itoa(status), ref)
		}
		return op
	}
	c.unrouted = responses(map[int]string{404: "NotFound", 413: "PayloadTooLarge"})
	c.wrongMethod = responses(map[int]string{405: "MethodNotAllowed", 413: "PayloadTooLarge"})
	return c, nil
})

// Match finds the document's path for a request path as Gin routes it:
// literal segments match themselves, a parameter any one segment, empty
// included, except that the path's last segment must not be empty
// (/api/v1/companies//keys reaches its handler, /api/v1/companies/ does
// not).
func (c *Contract) Match(path string) (*Path, map[string]string) {
	segs := strings.Split(path, "/")
next:
	for i := range c.Paths {
		p := &c.Paths[i]
		if len(p.segments) != len(segs) {
			continue
		}
		params := map[string]string{}
		for j, s := range p.segments {
			if name, ok := strings.CutPrefix(s, "{"); ok {
				if segs[j] == "" && j == len(segs)-1 {
					continue next
				}
				params[strings.TrimSuffix(name, "}")] = segs[j]
				continue
			}
			if s != segs[j] {
				continue next
			}
		}
		return p, params
	}
	return nil, nil
}

// Methods lists the methods the document gives a path, sorted.
func (p *Path) Methods() []string {
	return slices.Sorted(maps.Keys(p.Item.Operations()))
}

// Exchange is one request and the response it got.
type Exchange struct {
	Req     *http.Request // as sent; its body is not read again
	ReqBody []byte        // the request body, as far as the server read it
	Status  int
	Header  http.Header
	Body    []byte
}

// Verdict is what the document says of an exchange.
type Verdict struct {
	// Request is what the document finds wrong with the request; nil for a
	// request it describes. Deliberately bad requests have one: that alone
	// is no failure.
	Request error
	// Response is what contradicts the document: a response it does not
	// describe (status, headers, body), or a success for a request it
	// refuses (the document would then be stricter than the server).
	Response error
}

// statusClientClosedRequest is server.StatusClientClosedRequest (499):
// the status of a request whose client left before its answer.
const statusClientClosedRequest = 499

var (
	errPathNotInDocument   = errors.New("the path is not in the document")
	errMethodNotInDocument = errors.New("the method is not in the document for this path")
)

// Check holds an exchange to the document.
func (c *Contract) Check(ctx context.Context, x Exchange) Verdict {
	if x.Status == statusClientClosedRequest && x.Req.Context().Err() != nil {
		// The client left before the answer: no response reached anyone.
		return Verdict{}
	}
	p, params := c.Match(x.Req.URL.Path)
	if p == nil {
		return Verdict{errPathNotInDocument, c.validateResponse(ctx, c.route("", nil, c.unrouted), nil, x)}
	}
	op := p.Item.GetOperation(x.Req.Method)
	if op == nil {
		err := c.validateResponse(ctx, c.route(p.Template, p.Item, c.wrongMethod), params, x)
		if err == nil && x.Status == http.StatusMethodNotAllowed {
			allow := strings.Split(x.Header.Get("Allow"), ", ")
			slices.Sort(allow)
			if want := p.Methods(); !slices.Equal(allow, want) {
				err = fmt.Errorf("the Allow header lists %v, the document %v", allow, want)
			}
		}
		return Verdict{errMethodNotInDocument, err}
	}
	route := c.route(p.Template, p.Item, op)
	route.Method = x.Req.Method
	v := Verdict{Request: c.validateRequest(ctx, route, params, x)}
	v.Response = c.validateResponse(ctx, route, params, x)
	if v.Response == nil && v.Request != nil && x.Status < 400 {
		v.Response = fmt.Errorf("the server answered %d to a request the document refuses: %w", x.Status, v.Request)
	}
	return v
}

func (c *Contract) route(path string, item *openapi3.PathItem, op *openapi3.Operation) *routers.Route {
	return &routers.Route{Spec: c.Doc, Path: path, PathItem: item, Operation: op}
}

func (c *Contract) validateRequest(ctx context.Context, route *routers.Route, params map[string]string, x Exchange) error {
	req := x.Req.Clone(ctx)
	req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, int64(len(x.ReqBody))
	if len(x.ReqBody) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(x.ReqBody))
	}
	opts := &openapi3filter.Options{AuthenticationFunc: credentialPresented, SkipSettingDefaults: true, MultiError: true}
	opts.WithCustomSchemaErrorFunc(schemaErrorMessage)
	return openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts})
}

func (c *Contract) validateResponse(ctx context.Context, route *routers.Route, params map[string]string, x Exchange) error {
	resp := route.Operation.Responses.Status(x.Status)
	if resp == nil {
		return fmt.Errorf("status %d is not documented here", x.Status)
	}
	head := x.Req.Method == http.MethodHead
	if len(resp.Value.Content) == 0 && len(x.Body) > 0 && !head {
		return fmt.Errorf("a %d has a body where the document has none", x.Status)
	}
	if x.Status == http.StatusNotModified {
		// kin-openapi skips 304s entirely: their headers are checked here.
		return validateHeaders(resp.Value, x.Header)
	}
	req := x.Req.Clone(ctx)
	if head {
		// kin-openapi skips HEAD entirely. Validated as a GET against the
		// HEAD operation, whose responses document headers and no body.
		req.Method = http.MethodGet
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	opts.WithCustomSchemaErrorFunc(schemaErrorMessage)
	return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 x.Status,
		Header:                 x.Header,
		Body:                   io.NopCloser(bytes.NewReader(x.Body)),
		Options:                opts,
	})
}

// schemaErrorMessage says where a value broke which rule, without the
// schema dump kin-openapi appends by default.
func schemaErrorMessage(err *openapi3.SchemaError) string {
	return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
}

// validateHeaders checks a response's headers against the document's.
func validateHeaders(resp *openapi3.Response, h http.Header) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(resp.Headers)) {
		spec := resp.Headers[name].Value
		vs := h.Values(name)
		if len(vs) == 0 {
			if spec.Required {
				errs = append(errs, fmt.Errorf("header %s is missing", name))
			}
			continue
		}
		var v any = vs[0]
		if spec.Schema.Value.Type.Is(openapi3.TypeInteger) {
			n, err := strconv.ParseInt(vs[0], 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("header %s: %q is not an integer", name, vs[0]))
				continue
			}
			v = float64(n)
		}
		if err := spec.Schema.Value.VisitJSON(v); err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// credentialPresented is the document's security schemes as far as a
// request alone can tell: the credential is there, in the form the scheme
// names. Whether it is good is the server's to say (401).
func credentialPresented(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header
	s := in.SecurityScheme
	switch {
	case s.Type == "apiKey" && s.In == "header":
		if vs := h.Values(s.Name); len(vs) != 1 || strings.TrimSpace(vs[0]) == "" {
			return fmt.Errorf("no single non-empty %s header", s.Name)
		}
	case s.Type == "http" && (strings.EqualFold(s.Scheme, "bearer") || strings.EqualFold(s.Scheme, "basic")):
		vs := h.Values("Authorization")
		if len(vs) != 1 {
			return errors.New("no single Authorization header")
		}
		scheme, cred, ok := strings.Cut(vs[0], " ")
		if !ok || !strings.EqualFold(scheme, s.Scheme) || strings.TrimSpace(cred) == "" {
			return fmt.Errorf("the Authorization header is not %s credentials", s.Scheme)
		}
	default:
		return fmt.Errorf("security scheme %s of type %s is not known to the tests", in.SecuritySchemeName, s.Type)
	}
	return nil
}

// ReadBody records what the server reads of a request body into Into.
type ReadBody struct {
	io.ReadCloser
	Into *bytes.Buffer
}

func (b ReadBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.Into.Write(p[:n])
	return n, err
}

// Transport wraps next (http.DefaultTransport if nil) so that every
// exchange it carries is held to the document: a contradiction fails t.
// It reads each response body whole before handing it on, so it suits
// requests whose answers are read whole, not streams.
func Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{t: t, next: next}
}

type transport struct {
	t    testing.TB
	next http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var sent []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		sent = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(sent))
	}
	resp, err := tr.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return resp, nil // the caller meets the cut-off body as it would have
	}
	c, err := Load()
	if err != nil {
		tr.t.Errorf("apitest: %v", err)
		return resp, nil
	}
	x := Exchange{Req: req, ReqBody: sent, Status: resp.StatusCode, Header: resp.Header, Body: body}
	if v := c.Check(req.Context(), x); v.Response != nil {
		tr.t.Errorf("%s %s answered %d, which contradicts api/openapi.json: %v\nbody: %.400s", req.Method, req.URL.Path, resp.StatusCode, v.Response, body)
	}
	return resp, nil
}
