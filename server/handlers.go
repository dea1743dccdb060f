package server

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"keygate/keys"
	"keygate/tokens"
)

type loginRequest struct {
	APIKey *string `json:"apiKey"`
}

func (r *loginRequest) validate() error { return requiredString("apiKey", r.APIKey) }

type refreshRequest struct {
	RefreshToken *string `json:"refreshToken"`
}

func (r *refreshRequest) validate() error { return requiredString("refreshToken", r.RefreshToken) }

type tokenResponse struct {
	JWT                    string `json:"jwt"`
	ExpirationDate         string `json:"expirationDate"`
	RefreshToken           string `json:"refreshToken"`
	RefreshTokenExpiration string `json:"refreshTokenExpiration"`
}

func (s *Server) tokenResponse(c *gin.Context, p tokens.Pair) {
	c.JSON(http.StatusOK, tokenResponse{
		JWT:                    p.JWT.Reveal(),
		ExpirationDate:         stamp(p.ExpiresAt),
		RefreshToken:           p.RefreshToken.Reveal(),
		RefreshTokenExpiration: stamp(p.RefreshTokenExpiration),
	})
}

// credentialFailure reports whether err is a refused credential, which
// spends the client address's failure budget.
func credentialFailure(err error) bool {
	return errors.Is(err, keys.ErrInvalidKey) || errors.Is(err, tokens.ErrInvalidRefreshToken)
}

func (s *Server) login(c *gin.Context) {
	var req loginRequest
	if !s.bind(c, &req) {
		return
	}
	if ok, wait := s.limits.login.allow(secretKey(*req.APIKey)); !ok {
		s.rateLimited(c, wait)
		return
	}
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok {
		s.rateLimited(c, wait)
		return
	}
	pair, err := s.tokens.Login(c.Request.Context(), *req.APIKey, c.ClientIP())
	try.end(credentialFailure(err))
	if err != nil {
		s.fail(c, err)
		return
	}
	s.tokenResponse(c, pair)
}

func (s *Server) refresh(c *gin.Context) {
	var req refreshRequest
	if !s.bind(c, &req) {
		return
	}
	if family, ok := s.tokens.FamilyOf(*req.RefreshToken); ok {
		if ok, wait := s.limits.refresh.allow(family); !ok {
			s.rateLimited(c, wait)
			return
		}
	}
	try, ok, wait := s.limits.failures.begin(clientKey(c.ClientIP()))
	if !ok {
		s.rateLimited(c, wait)
		return
	}
	pair, err := s.tokens.Refresh(c.Request.Context(), *req.RefreshToken, c.ClientIP())
	try.end(credentialFailure(err))
	if err != nil {
		s.fail(c, err)
		return
	}
	s.tokenResponse(c, pair)
}

func (s *Server) logout(c *gin.Context) {
	var req refreshRequest
	if !s.bind(c, &req) {
		return
	}
	if err := s.tokens.Logout(c.Request.Context(), *req.RefreshToken); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

type meResponse struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	Name           string `json:"name"`
	PartnerID      string `json:"partnerId,omitempty"`
	KeyID          string `json:"keyId"`
	ExpirationDate string `json:"expirationDate"`
}

func (s *Server) me(c *gin.Context) {
	sess := session(c)
	p := sess.Principal
	resp := meResponse{Type: string(p.Kind), ID: p.ID, Name: p.Name, KeyID: p.KeyID, ExpirationDate: stamp(sess.ExpiresAt)}
	if p.Kind == keys.KindCompany {
		resp.PartnerID = p.PartnerID
	}
	c.JSON(http.StatusOK, resp)
}

type createCompanyRequest struct {
	Name       *string `json:"name"`
	ExternalID *string `json:"externalId"`
}

func (r *createCompanyRequest) validate() error {
	if err := requiredString("name", r.Name); err != nil {
		return err
	}
	if err := boundedString("name", r.Name, 200); err != nil {
		return err
	}
	return boundedString("externalId", r.ExternalID, 200)
}

type companyResponse struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	ExternalID *string `json:"externalId"`
	PartnerID  string  `json:"partnerId"`
	CreatedAt  string  `json:"createdAt"`
	Status     string  `json:"status"`
}

func companyJSON(co keys.Company) companyResponse {
	return companyResponse{ID: co.ID, Name: co.Name, ExternalID: co.ExternalID, PartnerID: co.PartnerID, CreatedAt: stamp(co.CreatedAt), Status: co.Status}
}

type createdCompanyResponse struct {
	companyResponse
	APIKey string `json:"apiKey"`
	KeyID  string `json:"keyId"`
}

// actor is the audited caller of an authenticated request.
func actor(c *gin.Context) keys.Actor {
	p := session(c).Principal
	return keys.Actor{Type: string(p.Kind), ID: p.ID, Addr: c.ClientIP()}
}

func (s *Server) createCompany(c *gin.Context) {
	var req createCompanyRequest
	if !s.bind(c, &req) {
		return
	}
	partnerID := session(c).Principal.ID
	co, key, err := s.keys.CreateCompany(c.Request.Context(), actor(c), partnerID, keys.CompanyInput{Name: *req.Name, ExternalID: req.ExternalID})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, createdCompanyResponse{companyResponse: companyJSON(co), APIKey: key.APIKey.Reveal(), KeyID: key.ID})
}

const (
	defaultPageSize = 50
	maxPageSize     = 200
	cursorPrefix    = "c1."
)

func (s *Server) listCompanies(c *gin.Context) {
	page, err := parsePage(c.Query("limit"), c.Query("cursor"))
	if err != nil {
		s.fail(c, err)
		return
	}
	res, err := s.keys.ListCompanies(c.Request.Context(), session(c).Principal.ID, page)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := struct {
		Companies  []companyResponse `json:"companies"`
		NextCursor *string           `json:"nextCursor"`
	}{Companies: make([]companyResponse, 0, len(res.Companies))}
	for _, co := range res.Companies {
		out.Companies = append(out.Companies, companyJSON(co))
	}
	if res.More {
		cur := base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(res.Last, 10)))
		out.NextCursor = &cur
	}
	c.JSON(http.StatusOK, out)
}

// parsePage reads limit (1..200, default 50) and the opaque cursor.
func parsePage(limit, cursor string) (keys.Page, error) {
	page := keys.Page{Limit: defaultPageSize}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > maxPageSize {
			return keys.Page{}, &keys.ValidationError{Field: "limit", Message: "must be an integer from 1 to 200"}
		}
		page.Limit = n
	}
	if cursor != "" {
		bad := &keys.ValidationError{Field: "cursor", Message: "is not a cursor this API returned"}
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(raw) <= len(cursorPrefix) || string(raw[:len(cursorPrefix)]) != cursorPrefix {
			return keys.Page{}, bad
		}
		n, err := strconv.ParseInt(string(raw[len(cursorPrefix):]), 10, 64)
		if err != nil || n < 1 {
			return keys.Page{}, bad
		}
		page.After = n
	}
	return page, nil
}

func (s *Server) getCompany(c *gin.Context) {
	co, err := s.keys.GetCompany(c.Request.Context(), session(c).Principal.ID, c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, companyJSON(co))
}

func (s *Server) disableCompany(c *gin.Context) {
	if err := s.keys.DisableCompany(c.Request.Context(), actor(c), session(c).Principal.ID, c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) createCompanyKey(c *gin.Context) {
	key, err := s.keys.CreateCompanyKey(c.Request.Context(), actor(c), session(c).Principal.ID, c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"keyId": key.ID, "apiKey": key.APIKey.Reveal(), "createdAt": stamp(key.CreatedAt)})
}

type keyResponse struct {
	KeyID      string  `json:"keyId"`
	Hint       string  `json:"hint"`
	CreatedAt  string  `json:"createdAt"`
	LastUsedAt *string `json:"lastUsedAt"`
	RevokedAt  *string `json:"revokedAt"`
}

func (s *Server) listCompanyKeys(c *gin.Context) {
	ks, err := s.keys.ListCompanyKeys(c.Request.Context(), session(c).Principal.ID, c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	out := make([]keyResponse, 0, len(ks))
	for _, k := range ks {
		out = append(out, keyResponse{KeyID: k.ID, Hint: k.Hint, CreatedAt: stamp(k.CreatedAt), LastUsedAt: stampPtr(k.LastUsedAt), RevokedAt: stampPtr(k.RevokedAt)})
	}
	c.JSON(http.StatusOK, gin.H{"keys": out})
}

func (s *Server) revokeCompanyKey(c *gin.Context) {
	err := s.keys.RevokeCompanyKey(c.Request.Context(), actor(c), session(c).Principal.ID, c.Param("id"), c.Param("keyId"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
