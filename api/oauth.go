package api

// The OAuth 2.0 face: keygate's token endpoint, revocation, introspection
// and server metadata speak RFC 6749, 7009, 7662 and 8414, whose members
// are snake_case.

// OAuthToken is a successful token response (RFC 6749 §5.1).
type OAuthToken struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"` // "Bearer"
	ExpiresIn    int64  `json:"expires_in"` // seconds
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// OAuthError is an error response of the OAuth endpoints (RFC 6749 §5.2).
type OAuthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// The OAuth error codes keygate answers (RFC 6749 §5.2). Never
// unauthorized_client (every client may use both grants) or RFC 7009's
// unsupported_token_type (a revocation is 200 whatever the token).
const (
	OAuthInvalidRequest         = "invalid_request"
	OAuthInvalidClient          = "invalid_client"
	OAuthInvalidGrant           = "invalid_grant"
	OAuthUnsupportedGrantType   = "unsupported_grant_type"
	OAuthInvalidScope           = "invalid_scope"
	OAuthTemporarilyUnavailable = "temporarily_unavailable"
	OAuthServerError            = "server_error"
)

// Introspection is a token introspection response (RFC 7662 §2.2). An
// inactive token's is {"active": false} and nothing else.
type Introspection struct {
	Active    bool     `json:"active"`
	ClientID  string   `json:"client_id,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Scope     string   `json:"scope,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	TokenType string   `json:"token_type,omitempty"` // "Bearer" or "refresh_token"
	Jti       string   `json:"jti,omitempty"`
	Kind      string   `json:"kind,omitempty"` // KindPartner or KindCompany
	PartnerID string   `json:"partner_id,omitempty"`
	CompanyID string   `json:"company_id,omitempty"`
}

// ServerMetadata is the authorization server metadata (RFC 8414).
type ServerMetadata struct {
	Issuer                                    string   `json:"issuer"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	JWKSURI                                   string   `json:"jwks_uri"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	ScopesSupported                           []string `json:"scopes_supported,omitempty"`
}
