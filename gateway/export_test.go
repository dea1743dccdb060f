package gateway

import "keygate/server"

// ServerAdmin is the admin handler configuration Serve uses.
func ServerAdmin(g *Gateway) server.AdminConfig {
	return server.AdminConfig{Pprof: g.cfg.Admin.Pprof, Metrics: g.Metrics.Handler()}
}
