package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"keygate/api"
)

// openAPIDocument is the API's OpenAPI document (api/openapi.json), read
// once: it is part of the binary and never changes while it runs.
var openAPIDocument = api.OpenAPI()

// openAPI serves the OpenAPI document, so that clients and tools can read
// the contract from the gateway they talk to.
func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, jsonContentType, openAPIDocument)
}
