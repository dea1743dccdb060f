package server_test

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
	"keygate/server"
)

// The contract: every response the tests see is held to the OpenAPI
// document (api/openapi.json) by kin-openapi's validators. The harness
// checks each exchange it serves, the fuzzer each one it makes.

// contract is the parsed document and the routes it describes.
type contract struct {
	doc   *openapi3.T
	paths []docPath
	// unrouted is what a path the document lacks may be answered with;
	// wrongMethod what a listed path may be answered with for a method it
	// does not list.
	unrouted, wrongMethod *openapi3.Operation
}

// docPath is one path of the document, split into segments; a segment
// "{name}" is a parameter.
type docPath struct {
	template string
	segments []string
	item     *openapi3.PathItem
}

// theContract loads the document once for the whole test binary.
var theContract = sync.OnceValues(func() (*contract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("loading api/openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("api/openapi.json: %w", err)
	}
	c := &contract{doc: doc}
	for tmpl, item := range doc.Paths.Map() {
		c.paths = append(c.paths, docPath{template: tmpl, segments: strings.Split(tmpl, "/"), item: item})
	}
	slices.SortFunc(c.paths, func(a, b docPath) int { return strings.Compare(a.template, b.template) })
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

// mustContract returns the contract or fails t.
func mustContract(t testing.TB) *contract {
	t.Helper()
	c, err := theContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// match finds the document's path for a request path as Gin routes it:
// literal segments match themselves, a parameter any one segment, empty
// included, except that the path's last segment must not be empty
// (/api/v1/companies//keys reaches its handler, /api/v1/companies/ does
// not).
func (c *contract) match(path string) (*docPath, map[string]string) {
	segs := strings.Split(path, "/")
next:
	for i := range c.paths {
		p := &c.paths[i]
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

// methods lists the methods the document gives a path, sorted.
func (p *docPath) methods() []string {
	return slices.Sorted(maps.Keys(p.item.Operations()))
}

// exchange is one request and the response it got.
type exchange struct {
	req     *http.Request // as sent; its body is not read again
	reqBody []byte        // the request body, as far as the server read it
	status  int
	header  http.Header
	body    []byte
}

// verdict is what the document says of an exchange.
type verdict struct {
	// request is what the document finds wrong with the request; nil for a
	// request it describes. Deliberately bad requests have one: that alone
	// is no failure.
	request error
	// response is what contradicts the document: a response it does not
	// describe (status, headers, body), or a success for a request it
	// refuses (the document would then be stricter than the server).
	response error
}

var (
	errPathNotInDocument   = errors.New("the path is not in the document")
	errMethodNotInDocument = errors.New("the method is not in the document for this path")
)

// check holds an exchange to the document.
func (c *contract) check(ctx context.Context, x exchange) verdict {
	if x.status == server.StatusClientClosedRequest && x.req.Context().Err() != nil {
		// The client left before the answer: no response reached anyone.
		return verdict{}
	}
	p, params := c.match(x.req.URL.Path)
	if p == nil {
		return verdict{errPathNotInDocument, c.validateResponse(ctx, c.route("", nil, c.unrouted), nil, x)}
	}
	op := p.item.GetOperation(x.req.Method)
	if op == nil {
		err := c.validateResponse(ctx, c.route(p.template, p.item, c.wrongMethod), params, x)
		if err == nil && x.status == http.StatusMethodNotAllowed {
			allow := strings.Split(x.header.Get("Allow"), ", ")
			slices.Sort(allow)
			if want := p.methods(); !slices.Equal(allow, want) {
				err = fmt.Errorf("Allow lists %v, the document %v", allow, want)
			}
		}
		return verdict{errMethodNotInDocument, err}
	}
	route := c.route(p.template, p.item, op)
	route.Method = x.req.Method
	v := verdict{request: c.validateRequest(ctx, route, params, x)}
	v.response = c.validateResponse(ctx, route, params, x)
	if v.response == nil && v.request != nil && x.status < 400 {
		v.response = fmt.Errorf("the server answered %d to a request the document refuses: %w", x.status, v.request)
	}
	return v
}

func (c *contract) route(path string, item *openapi3.PathItem, op *openapi3.Operation) *routers.Route {
	return &routers.Route{Spec: c.doc, Path: path, PathItem: item, Operation: op}
}

func (c *contract) validateRequest(ctx context.Context, route *routers.Route, params map[string]string, x exchange) error {
	req := x.req.Clone(ctx)
	req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, int64(len(x.reqBody))
	if len(x.reqBody) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	}
	opts := &openapi3filter.Options{AuthenticationFunc: credentialPresented, SkipSettingDefaults: true, MultiError: true}
	opts.WithCustomSchemaErrorFunc(schemaErrorMessage)
	return openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts})
}

func (c *contract) validateResponse(ctx context.Context, route *routers.Route, params map[string]string, x exchange) error {
	resp := route.Operation.Responses.Status(x.status)
	if resp == nil {
		return fmt.Errorf("status %d is not documented here", x.status)
	}
	head := x.req.Method == http.MethodHead
	if len(resp.Value.Content) == 0 && len(x.body) > 0 && !head {
		return fmt.Errorf("a %d has a body where the document has none", x.status)
	}
	if x.status == http.StatusNotModified {
		// kin-openapi skips 304s entirely: their headers are checked here.
		return validateHeaders(resp.Value, x.header)
	}
	req := x.req.Clone(ctx)
	if head {
		// kin-openapi skips HEAD entirely. Validated as a GET against the
		// HEAD operation, whose responses document headers and no body.
		req.Method = http.MethodGet
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	opts.WithCustomSchemaErrorFunc(schemaErrorMessage)
	return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 x.status,
		Header:                 x.header,
		Body:                   io.NopCloser(bytes.NewReader(x.body)),
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
			return fmt.Errorf("Authorization is not %s credentials", s.Scheme)
		}
	default:
		return fmt.Errorf("security scheme %s of type %s is not known to the tests", in.SecuritySchemeName, s.Type)
	}
	return nil
}

// readBody records what the server reads of a request body.
type readBody struct {
	io.ReadCloser
	read *bytes.Buffer
}

func (b readBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Write(p[:n])
	return n, err
}
