package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

// referenceServer is the minimal handler keygate is measured against: what
// anyone would write in an afternoon with Gin and golang-jwt, and nothing
// else. JSON body parsed, SHA-256 of the key, a map lookup, an ES256
// signature, a JSON response; refresh tokens swapped in a map; a GET that
// verifies the JWT. No middleware, no logging, no storage, no limits. It
// prints "KEY <partner key>" and "ADDR <address>" like the floor, and
// accepts the same seeding calls (POST /api/v1/companies mints a key).
func referenceServer(args []string) error {
	fs := flag.NewFlagSet("reference-server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ref, err := newReference()
	if err != nil {
		return err
	}
	partnerKey := ref.mint("pk_", refPrincipal{Kind: "partner", ID: "par_reference"})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("KEY %s\nADDR %s\n", partnerKey, ln.Addr())
	hs := &http.Server{Handler: ref.engine(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type refPrincipal struct {
	Kind, ID, PartnerID, CompanyID string
}

type reference struct {
	key     *ecdsa.PrivateKey
	mu      sync.RWMutex
	keys    map[[sha256.Size]byte]refPrincipal
	refresh map[string]refPrincipal
	n       int
}

func newReference() (*reference, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &reference{key: key, keys: map[[sha256.Size]byte]refPrincipal{}, refresh: map[string]refPrincipal{}}, nil
}

func (r *reference) mint(prefix string, p refPrincipal) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	key := prefix + base64.RawURLEncoding.EncodeToString(b)
	r.mu.Lock()
	r.keys[sha256.Sum256([]byte(key))] = p
	r.mu.Unlock()
	return key
}

type refClaims struct {
	jwt.RegisteredClaims
	Kind      string `json:"kind"`
	PartnerID string `json:"partner_id,omitempty"`
	CompanyID string `json:"company_id,omitempty"`
}

func (r *reference) issue(c *gin.Context, p refPrincipal) {
	now := time.Now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	t := jwt.NewWithClaims(jwt.SigningMethodES256, refClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "reference", Subject: p.ID, Audience: jwt.ClaimStrings{"r-auth"},
			ExpiresAt: jwt.NewNumericDate(now.Add(15 * time.Minute)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti),
		},
		Kind: p.Kind, PartnerID: p.PartnerID, CompanyID: p.CompanyID,
	})
	signed, err := t.SignedString(r.key)
	if err != nil {
		c.Status(http.StatusInternalServerError)
		return
	}
	rt := make([]byte, 32)
	_, _ = rand.Read(rt)
	token := hex.EncodeToString(rt)
	r.mu.Lock()
	r.refresh[token] = p
	r.mu.Unlock()
	c.JSON(http.StatusOK, gin.H{
		"jwt": signed, "expirationDate": now.Add(15 * time.Minute).UTC().Format(time.RFC3339Nano),
		"refreshToken": token, "refreshTokenExpiration": now.Add(720 * time.Hour).UTC().Format(time.RFC3339Nano),
	})
}

func (r *reference) engine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.POST("/api/v1/auth/login", func(c *gin.Context) {
		var req struct {
			APIKey string `json:"apiKey"`
		}
		if err := c.ShouldBindJSON(&req); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		r.mu.RLock()
		p, ok := r.keys[sha256.Sum256([]byte(req.APIKey))]
		r.mu.RUnlock()
		if !ok {
			c.Status(http.StatusUnauthorized)
			return
		}
		r.issue(c, p)
	})
	e.POST("/api/v1/auth/refresh", func(c *gin.Context) {
		var req struct {
			RefreshToken string `json:"refreshToken"`
		}
		if err := c.ShouldBindJSON(&req); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		p, ok := r.refresh[req.RefreshToken]
		delete(r.refresh, req.RefreshToken)
		r.mu.Unlock()
		if !ok {
			c.Status(http.StatusUnauthorized)
			return
		}
		r.issue(c, p)
	})
	e.GET("/api/v1/auth/me", func(c *gin.Context) {
		var claims refClaims
		_, err := jwt.ParseWithClaims(c.GetHeader("R-Auth"), &claims, func(*jwt.Token) (any, error) { return &r.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("reference"), jwt.WithAudience("r-auth"), jwt.WithExpirationRequired())
		if err != nil {
			c.Status(http.StatusUnauthorized)
			return
		}
		c.JSON(http.StatusOK, gin.H{"type": claims.Kind, "id": claims.Subject, "partnerId": claims.PartnerID})
	})
	// Seeding only, never measured.
	e.POST("/api/v1/companies", func(c *gin.Context) {
		r.mu.Lock()
		r.n++
		id := fmt.Sprintf("com_%d", r.n)
		r.mu.Unlock()
		key := r.mint("ck_", refPrincipal{Kind: "company", ID: id, PartnerID: "par_reference", CompanyID: id})
		c.JSON(http.StatusCreated, gin.H{"id": id, "apiKey": key})
	})
	return e
}
