package ginverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"keygate/api"
	"keygate/verify"
	"keygate/verify/ginverify"
)

// signer is a JWK Set of one key the test holds, served as keygate serves
// its own, and tokens shaped as keygate's.
type signer struct {
	key *ecdsa.PrivateKey
	url string
}

func newSigner(t *testing.T) *signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]), "kid": "kid_test", "alg": "ES256", "use": "sig",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(set) }))
	t.Cleanup(srv.Close)
	return &signer{key: key, url: srv.URL}
}

func (s *signer) token(t *testing.T, kind, id string) string {
	t.Helper()
	now := time.Now().Unix()
	c := jwt.MapClaims{
		"iss": "keygate", "aud": []string{"r-auth"}, "sub": id, "client_id": id, "kind": kind,
		"partner_id": "par_1", "key_id": "key_1", "jti": "jti_1", "iat": now, "nbf": now, "exp": now + 60,
	}
	if kind == api.KindCompany {
		c["company_id"] = id
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"], tok.Header["typ"] = "kid_test", "at+jwt"
	signed, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestGinMiddleware(t *testing.T) {
	gin.SetMode(gin.TestMode)
	s := newSigner(t)
	v, err := verify.New(t.Context(), verify.Config{JWKSURL: s.url, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	r := gin.New()
	r.Use(ginverify.Middleware(v))
	ran := false
	r.GET("/whoami", func(c *gin.Context) {
		ran = true
		claims, ok := verify.FromContext(c.Request.Context())
		if !ok {
			c.Status(http.StatusInternalServerError)
			return
		}
		c.String(http.StatusOK, claims.Kind+" "+claims.Subject)
	})
	r.GET("/partners-only", ginverify.RequireKind(api.KindPartner), func(c *gin.Context) { c.Status(http.StatusNoContent) })

	serve := func(path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("R-Auth", token)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec
	}
	partner, company := s.token(t, api.KindPartner, "par_1"), s.token(t, api.KindCompany, "com_1")

	if rec := serve("/whoami", partner); rec.Code != http.StatusOK || rec.Body.String() != "partner par_1" {
		t.Errorf("partner: %d %q", rec.Code, rec.Body)
	}
	if rec := serve("/partners-only", partner); rec.Code != http.StatusNoContent {
		t.Errorf("partner on a partner route: %d", rec.Code)
	}
	if rec := serve("/partners-only", company); rec.Code != http.StatusForbidden {
		t.Errorf("company on a partner route: %d %s", rec.Code, rec.Body)
	}

	// Gin answers exactly as the net/http middleware does.
	ran = false
	want := httptest.NewRecorder()
	v.Middleware(http.NotFoundHandler()).ServeHTTP(want, httptest.NewRequest(http.MethodGet, "/whoami", nil))
	for _, token := range []string{"", "garbage", partner[:len(partner)-2] + "AA"} {
		rec := serve("/whoami", token)
		if rec.Code != http.StatusUnauthorized || rec.Body.String() != want.Body.String() ||
			rec.Header().Get("WWW-Authenticate") != `Bearer error="invalid_token"` || rec.Header().Get("Content-Type") != want.Header().Get("Content-Type") {
			t.Errorf("token %.10q: %d %v %q, want %d %v %q", token, rec.Code, rec.Header(), rec.Body, want.Code, want.Header(), want.Body)
		}
	}
	if ran {
		t.Error("the handler ran for a refused token")
	}
}
