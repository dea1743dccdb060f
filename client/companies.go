package client

// keygate's partner API: companies and their keys. A company's token gets
// 403 forbidden on all of it.

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"keygate/api"
)

// authed calls keygate with the access token; if keygate refuses it, it
// refreshes once and calls again.
func (c *Client) authed(ctx context.Context, method, path string, body, out any) error {
	s, err := c.session(ctx, "")
	if err != nil {
		return err
	}
	err = c.do(ctx, method, path, body, out, s.jwt, true)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		return err
	}
	fresh, ferr := c.session(ctx, s.jwt)
	if ferr != nil {
		return err
	}
	return c.do(ctx, method, path, body, out, fresh.jwt, true)
}

// CreateCompany creates a company; externalID may be empty. The company's
// first API key is in the result, and nowhere else ever again.
func (c *Client) CreateCompany(ctx context.Context, name, externalID string) (api.CreatedCompany, error) {
	req := api.CreateCompanyRequest{Name: &name}
	if externalID != "" {
		req.ExternalID = &externalID
	}
	var out api.CreatedCompany
	err := c.authed(ctx, http.MethodPost, "/api/v1/companies", req, &out)
	return out, err
}

// GetCompany returns one of the partner's companies; another partner's is
// a 404, like one that does not exist.
func (c *Client) GetCompany(ctx context.Context, id string) (api.Company, error) {
	var out api.Company
	err := c.authed(ctx, http.MethodGet, "/api/v1/companies/"+url.PathEscape(id), nil, &out)
	return out, err
}

// ListCompanies yields every company of the partner, oldest first, fetching
// page after page as the loop goes on. An error ends the sequence.
func (c *Client) ListCompanies(ctx context.Context) iter.Seq2[api.Company, error] {
	return func(yield func(api.Company, error) bool) {
		cursor := ""
		for {
			q := url.Values{"limit": {strconv.Itoa(c.pageSize)}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page api.CompanyList
			if err := c.authed(ctx, http.MethodGet, "/api/v1/companies?"+q.Encode(), nil, &page); err != nil {
				yield(api.Company{}, err)
				return
			}
			for _, co := range page.Companies {
				if !yield(co, nil) {
					return
				}
			}
			if page.NextCursor == nil || *page.NextCursor == "" {
				return
			}
			cursor = *page.NextCursor
		}
	}
}

// DisableCompany disables a company: its keys stop logging in and its
// refresh tokens stop refreshing. Disabling it again succeeds.
func (c *Client) DisableCompany(ctx context.Context, id string) error {
	return c.authed(ctx, http.MethodDelete, "/api/v1/companies/"+url.PathEscape(id), nil, nil)
}

// CreateCompanyKey adds an API key to a company, for rotation; older keys
// keep working until revoked. The key is in the result only.
func (c *Client) CreateCompanyKey(ctx context.Context, companyID string) (api.CreatedKey, error) {
	return c.CreateCompanyKeyWith(ctx, companyID, api.CreateKeyRequest{})
}

// CreateCompanyKeyWith is CreateCompanyKey with a name, an expiry or fewer
// scopes for the key (each optional).
func (c *Client) CreateCompanyKeyWith(ctx context.Context, companyID string, req api.CreateKeyRequest) (api.CreatedKey, error) {
	var out api.CreatedKey
	err := c.authed(ctx, http.MethodPost, "/api/v1/companies/"+url.PathEscape(companyID)+"/keys", req, &out)
	return out, err
}

// ListCompanyKeys describes a company's keys (hints only, never the keys).
func (c *Client) ListCompanyKeys(ctx context.Context, companyID string) ([]api.Key, error) {
	var out api.KeyList
	err := c.authed(ctx, http.MethodGet, "/api/v1/companies/"+url.PathEscape(companyID)+"/keys", nil, &out)
	return out.Keys, err
}

// RevokeCompanyKey revokes one of a company's keys and every refresh token
// obtained with it. Revoking it again succeeds.
func (c *Client) RevokeCompanyKey(ctx context.Context, companyID, keyID string) error {
	return c.authed(ctx, http.MethodDelete, "/api/v1/companies/"+url.PathEscape(companyID)+"/keys/"+url.PathEscape(keyID), nil, nil)
}
