package keys

import "context"

// CompanyInput is what a partner sends to create a company.
type CompanyInput struct {
	Name       string
	ExternalID *string
	Scopes     *Scopes // of its first key; nil: all its partner allows
}

// CreateCompany creates a company of the calling partner with its first key.
func (s *Service) CreateCompany(ctx context.Context, actor Actor, partnerID string, in CompanyInput) (Company, NewKey, error) {
	if err := validName("name", in.Name); err != nil {
		return Company{}, NewKey{}, err
	}
	if in.ExternalID != nil {
		if err := validName("externalId", *in.ExternalID); err != nil {
			return Company{}, NewKey{}, err
		}
	}
	p, err := s.store.GetPartner(ctx, partnerID)
	if err != nil {
		return Company{}, NewKey{}, err
	}
	now := s.now()
	c := Company{ID: NewID("com_"), PartnerID: partnerID, Name: in.Name, ExternalID: in.ExternalID, Status: StatusActive, CreatedAt: now}
	k, err := newKey(CompanyOwner(partnerID, c.ID), p.Scopes, KeyInput{Scopes: in.Scopes}, now)
	if err != nil {
		return Company{}, NewKey{}, err
	}
	evs := []AuditEvent{
		event(now, actor, "company.created", "company", c.ID),
		event(now, actor, "key.created", "key", k.ID),
	}
	if err := s.store.CreateCompany(ctx, c, k.Key, DigestOf(k.APIKey.Reveal()), evs); err != nil {
		return Company{}, NewKey{}, err
	}
	return c, k, nil
}

// GetCompany returns a company of the given partner; another partner's
// company is ErrNotFound, exactly like a missing one.
func (s *Service) GetCompany(ctx context.Context, partnerID, id string) (Company, error) {
	return s.store.GetCompany(ctx, partnerID, id)
}

// ListCompanies pages through a partner's companies, oldest first.
func (s *Service) ListCompanies(ctx context.Context, partnerID string, page Page) (CompanyPage, error) {
	if page.Limit < 1 || page.Limit > 200 {
		return CompanyPage{}, &ValidationError{Field: "limit", Message: "must be an integer from 1 to 200"}
	}
	return s.store.ListCompanies(ctx, partnerID, page)
}

// DisableCompany disables a company of the given partner.
func (s *Service) DisableCompany(ctx context.Context, actor Actor, partnerID, id string) error {
	now := s.now()
	defer s.cache.invalidate()
	return s.store.DisableCompany(ctx, partnerID, id, now, event(now, actor, "company.disabled", "company", id))
}

// ListCompanyKeys lists a company's keys, if it belongs to the partner:
// another partner's company is ErrNotFound, even when it has no keys.
func (s *Service) ListCompanyKeys(ctx context.Context, partnerID, companyID string) ([]Key, error) {
	if _, err := s.GetCompany(ctx, partnerID, companyID); err != nil {
		return nil, err
	}
	return s.store.ListKeys(ctx, CompanyOwner(partnerID, companyID))
}
