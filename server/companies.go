package server

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"keygate/api"
	"keygate/keys"
)

// The partner API: companies and their keys. Every route here sits behind
// authenticate and partnerOnly, so the caller is a partner and every
// company it names is looked up among its own.

func validateCreateCompany(r *api.CreateCompanyRequest) error {
	if err := requiredString("name", r.Name); err != nil {
		return err
	}
	if err := boundedString("name", r.Name, 200); err != nil {
		return err
	}
	if err := boundedString("externalId", r.ExternalID, 200); err != nil {
		return err
	}
	_, err := optionalScopes("scopes", r.Scopes)
	return err
}

func validateCreateKey(r *api.CreateKeyRequest) error {
	if err := boundedString("name", r.Name, 100); err != nil {
		return err
	}
	_, err := optionalScopes("scopes", r.Scopes)
	return err
}

// optionalScopes reads an optional list of scopes: nil when absent.
func optionalScopes(field string, v *[]string) (*keys.Scopes, error) {
	if v == nil {
		return nil, nil
	}
	set, err := keys.ParseScopes(field, *v)
	if err != nil {
		return nil, err
	}
	return &set, nil
}

func keyJSON(k keys.Key) api.Key {
	return api.Key{
		KeyID: k.ID, Hint: k.Hint, Name: nameOrNil(k.Name), Scopes: k.Scopes.List(), CreatedAt: api.NewTime(k.CreatedAt),
		ExpiresAt: api.TimePtr(k.ExpiresAt), LastUsedAt: api.TimePtr(k.LastUsedAt), RevokedAt: api.TimePtr(k.RevokedAt),
	}
}

// nameOrNil is a key's name on the wire: null for none.
func nameOrNil(name string) *string {
	if name == "" {
		return nil
	}
	return &name
}

func companyJSON(co keys.Company) api.Company {
	return api.Company{ID: co.ID, Name: co.Name, ExternalID: co.ExternalID, PartnerID: co.PartnerID, CreatedAt: api.NewTime(co.CreatedAt), Status: co.Status}
}

// actor is the audited caller of an authenticated request.
func actor(c *gin.Context) keys.Actor {
	return keys.ActorFor(session(c).Principal, c.ClientIP())
}

// partnerID is the calling partner's id.
func partnerID(c *gin.Context) string { return session(c).Principal.ID }

// companyOwner names the keys of the company in the path, among the
// calling partner's companies.
func companyOwner(c *gin.Context) keys.Owner { return keys.CompanyOwner(partnerID(c), c.Param("id")) }

func (s *Server) createCompany(c *gin.Context) {
	var req api.CreateCompanyRequest
	if !bind(s, c, &req, validateCreateCompany) {
		return
	}
	scopes, _ := optionalScopes("scopes", req.Scopes) // validateCreateCompany has checked them
	co, key, err := s.keys.CreateCompany(c.Request.Context(), actor(c), partnerID(c), keys.CompanyInput{Name: *req.Name, ExternalID: req.ExternalID, Scopes: scopes})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, api.CreatedCompany{Company: companyJSON(co), APIKey: key.APIKey.Reveal(), KeyID: key.ID, Scopes: key.Scopes.List()})
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
	res, err := s.keys.ListCompanies(c.Request.Context(), partnerID(c), page)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := api.CompanyList{Companies: make([]api.Company, 0, len(res.Companies))}
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
	co, err := s.keys.GetCompany(c.Request.Context(), partnerID(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, companyJSON(co))
}

func (s *Server) disableCompany(c *gin.Context) {
	if err := s.keys.DisableCompany(c.Request.Context(), actor(c), partnerID(c), c.Param("id")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) createCompanyKey(c *gin.Context) {
	var req api.CreateKeyRequest
	if !bindOptional(s, c, &req, validateCreateKey) {
		return
	}
	in := keys.KeyInput{}
	if req.Name != nil {
		in.Name = *req.Name
	}
	if req.ExpiresAt != nil {
		in.ExpiresAt = &req.ExpiresAt.Time
	}
	in.Scopes, _ = optionalScopes("scopes", req.Scopes) // validateCreateKey has checked them
	key, err := s.keys.CreateKey(c.Request.Context(), actor(c), companyOwner(c), in)
	if err != nil {
		s.fail(c, err)
		return
	}
	k := keyJSON(key.Key)
	c.JSON(http.StatusCreated, api.CreatedKey{
		KeyID: key.ID, APIKey: key.APIKey.Reveal(), CreatedAt: k.CreatedAt, Name: k.Name, Scopes: k.Scopes, ExpiresAt: k.ExpiresAt,
	})
}

func (s *Server) listCompanyKeys(c *gin.Context) {
	ks, err := s.keys.ListCompanyKeys(c.Request.Context(), partnerID(c), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	out := api.KeyList{Keys: make([]api.Key, 0, len(ks))}
	for _, k := range ks {
		out.Keys = append(out.Keys, keyJSON(k))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) revokeCompanyKey(c *gin.Context) {
	if err := s.keys.RevokeKey(c.Request.Context(), actor(c), companyOwner(c), c.Param("keyId")); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
