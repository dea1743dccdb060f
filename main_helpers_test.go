package main_test

// End-to-end tests of the real binary, in the external test package
// main_test so that they cannot touch anything of package main: TestMain
// builds ./keygate once and every test drives that binary, each in its own
// t.TempDir() as working directory (so data/keygate.db and data/master.key
// land there) with a clean environment (PATH, HOME and the KEYGATE_*
// variables a test sets).
//
// This file holds TestMain, the helpers for running the CLI and small
// utilities; server_helpers_test.go runs the server and verifies what it
// issues. The tests are in cli_test.go, config_test.go, e2e_test.go and
// crash_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// e2eBinary is the keygate binary TestMain builds.
var e2eBinary string

func TestMain(m *testing.M) { os.Exit(e2eMain(m)) }

func e2eMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	e2eBinary = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", e2eBinary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building keygate:", err)
		return 1
	}
	return m.Run()
}

// e2eEnv is a clean environment: PATH, HOME and the given KEY=value pairs.
// The admin listener is off unless a test asks for it: parallel servers
// would all want its fixed default port (a later value of a variable in
// the list wins).
func e2eEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "KEYGATE_ADMIN_ADDR="}, extra...)
}

// e2eTimestamp is the CLI's and the API's time format.
var e2eTimestamp = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$`)

func parseStamp(t *testing.T, s string) time.Time {
	t.Helper()
	if !e2eTimestamp.MatchString(s) {
		t.Fatalf("timestamp %q is not RFC 3339 UTC with milliseconds and +00:00", s)
	}
	at, err := time.Parse("2006-01-02T15:04:05.000-07:00", s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// ---------------------------------------------------------------------------
// Running the CLI

type cliResult struct {
	stdout, stderr string
	code           int
}

func runCommand(t *testing.T, dir string, env []string, name string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: timed out\nstderr: %s", name, args, stderr.String())
	}
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return res
}

func runKeygate(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	return runCommand(t, dir, env, e2eBinary, args...)
}

// mustKeygate runs a command that must succeed quietly and returns its stdout.
func mustKeygate(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	res := runKeygate(t, dir, env, args...)
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("keygate %q: exit %d\nstdout: %s\nstderr: %s", args, res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// assertOneLineError checks the CLI's failure contract: a non-zero exit,
// nothing on stdout, exactly one line on stderr, containing every want.
func assertOneLineError(t *testing.T, res cliResult, want ...string) {
	t.Helper()
	if res.code == 0 {
		t.Errorf("exit code 0, want non-zero\nstdout: %s\nstderr: %s", res.stdout, res.stderr)
	}
	if res.stdout != "" {
		t.Errorf("stdout not empty: %q", res.stdout)
	}
	if !strings.HasPrefix(res.stderr, "keygate: ") || !strings.HasSuffix(res.stderr, "\n") || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("stderr is not one line starting with \"keygate: \": %q", res.stderr)
	}
	for _, w := range want {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("stderr %q does not mention %q", res.stderr, w)
		}
	}
}

func decodeStrictJSON(t *testing.T, data string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %T from %q: %v", v, data, err)
	}
}

type createdPartner struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	Scopes       []string `json:"scopes"`
	KeyID        string   `json:"keyId"`
	APIKey       string   `json:"apiKey"`
	CreatedAt    string   `json:"createdAt"`
	KeyName      *string  `json:"keyName"`
	KeyScopes    []string `json:"keyScopes"`
	KeyExpiresAt *string  `json:"keyExpiresAt"`
}

func createPartner(t *testing.T, dir string, env []string, name string) createdPartner {
	t.Helper()
	out := mustKeygate(t, dir, env, "partner", "create", "--name", name, "--json")
	var p createdPartner
	decodeStrictJSON(t, out, &p)
	return p
}

type listedPartner struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Status    string   `json:"status"`
	CreatedAt string   `json:"createdAt"`
	Scopes    []string `json:"scopes"`
}

func listPartners(t *testing.T, dir string, env []string) []listedPartner {
	t.Helper()
	var ps []listedPartner
	decodeStrictJSON(t, mustKeygate(t, dir, env, "partner", "list", "--json"), &ps)
	return ps
}

type listedKey struct {
	KeyID      string   `json:"keyId"`
	Hint       string   `json:"hint"`
	Name       *string  `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  *string  `json:"expiresAt"`
	LastUsedAt *string  `json:"lastUsedAt"`
	RevokedAt  *string  `json:"revokedAt"`
}

type auditEvent struct {
	ID         int64  `json:"id"`
	At         string `json:"at"`
	ActorType  string `json:"actorType"`
	ActorID    string `json:"actorId"`
	Action     string `json:"action"`
	TargetType string `json:"targetType"`
	Target     string `json:"target"`
	ClientAddr string `json:"clientAddr"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail"`
}

func auditEvents(t *testing.T, dir string, env []string, args ...string) ([]auditEvent, string) {
	t.Helper()
	out := mustKeygate(t, dir, env, append([]string{"audit", "--json"}, args...)...)
	var evs []auditEvent
	decodeStrictJSON(t, out, &evs)
	return evs, out
}

// hasEvent reports whether evs holds an event matching every non-empty field of want.
func hasEvent(evs []auditEvent, want auditEvent) bool {
	return slices.ContainsFunc(evs, func(e auditEvent) bool {
		match := func(got, want string) bool { return want == "" || got == want }
		return match(e.ActorType, want.ActorType) && match(e.ActorID, want.ActorID) && match(e.Action, want.Action) &&
			match(e.TargetType, want.TargetType) && match(e.Target, want.Target) && match(e.Outcome, want.Outcome)
	})
}

// signingKeyRow is one row of `keygate signing-key list`.
type signingKeyRow struct {
	kid, alg                    string
	created, activates, retired string
}

func listSigningKeys(t *testing.T, dir string, env []string) []signingKeyRow {
	t.Helper()
	out := mustKeygate(t, dir, env, "signing-key", "list")
	lines := slices.Collect(strings.Lines(out))
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "KID ALGORITHM CREATED ACTIVATES RETIRED" {
		t.Fatalf("signing-key list header: %q", out)
	}
	var rows []signingKeyRow
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("signing-key list row %q: want 5 columns", line)
		}
		rows = append(rows, signingKeyRow{kid: f[0], alg: f[1], created: f[2], activates: f[3], retired: f[4]})
	}
	return rows
}

// ---------------------------------------------------------------------------
// Files and small utilities

func testdataPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// eventually polls cond every 50ms until it holds or within has passed.
func eventually(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// assertNoSecrets fails if any secret appears in any of the texts.
func assertNoSecrets(t *testing.T, secrets []string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%.10s...)", name, s)
			}
		}
	}
}

// dirSnapshot maps every path under dir to its mode and content.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := info.Mode().String()
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			entry += " " + string(b)
		}
		snap[rel] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
