package client

// SetPageSize makes ListCompanies fetch pages of n, so that tests see
// several pages without creating hundreds of companies.
func SetPageSize(c *Client, n int) { c.pageSize = n }
