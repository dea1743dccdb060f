package api

// LeakReport is one item of the body of POST /api/v1/keys/leaked, a JSON
// array of at most 1,000 of them: a token a secret scanner found in
// public, in the format of GitHub's secret scanning partner program.
// Members are pointers so that the server can tell a missing member from
// an empty one; members it does not know are ignored, so that a scanner
// that adds one does not lose its reports.
type LeakReport struct {
	Token  *string `json:"token"`  // what the scanner matched
	Type   *string `json:"type"`   // the scanner's name for its kind
	URL    *string `json:"url"`    // where it was found
	Source *string `json:"source"` // what it was found in: content, commit, ...
}

// Labels of a LeakVerdict.
const (
	LabelTruePositive  = "true_positive"  // a key of this keygate, now revoked
	LabelFalsePositive = "false_positive" // no key of this keygate
)

// LeakVerdict is one item of the 200 body of POST /api/v1/keys/leaked, a
// JSON array with one verdict per reported token, in the report's order.
type LeakVerdict struct {
	TokenHash string `json:"token_hash"` // lower-case hex SHA-256 of the token
	TokenType string `json:"token_type"` // the report's type
	Label     string `json:"label"`      // LabelTruePositive or LabelFalsePositive
}
