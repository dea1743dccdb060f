package server_test

import (
	"testing"

	"keygate/api/apitest"
)

// The contract: every response the tests see is held to the OpenAPI
// document (api/openapi.json) by package apitest. The harness checks each
// exchange it serves, the fuzzer each one it makes, env.validated each
// one a real listener serves.
type (
	contract = apitest.Contract
	exchange = apitest.Exchange
	readBody = apitest.ReadBody
)

// mustContract returns the contract or fails t.
func mustContract(t testing.TB) *contract {
	t.Helper()
	c, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
