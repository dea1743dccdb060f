package client

// SetPageSize makes ListCompanies fetch pages of n, so that tests see
// several pages without creating hundreds of companies.
func SetPageSize(c *Client, n int) { c.pageSize = n }

// Renewing reports whether a login or refresh is under way, so that a
// test knows at once whether a call started one in the background.
func Renewing(c *Client) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renewing != nil
}

// MaxRetryAfter is the longest Retry-After the client believes.
const MaxRetryAfter = maxRetryAfter
