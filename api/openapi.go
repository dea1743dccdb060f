package api

import (
	"embed"
)

//go:embed openapi.json
var openAPIFiles embed.FS

// OpenAPI returns the OpenAPI 3 document of the HTTP API, as JSON: every
// endpoint, request and response body, header, status and security scheme.
// docs/api.md says the same in prose. Each call returns a fresh copy.
func OpenAPI() []byte {
	b, err := openAPIFiles.ReadFile("openapi.json")
	if err != nil {
		panic("api: openapi.json is not embedded: " + err.Error()) // cannot happen: go:embed checks it at build time
	}
	return b
}
