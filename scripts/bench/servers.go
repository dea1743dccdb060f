package main

// Starting and stopping the servers under test.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// startKeygate runs the real binary on a fresh SQLite database with
// default settings (synchronous FULL) and the rate limits lifted, after
// minting a partner with the CLI; without its admin listener, and so
// without metrics, unless metrics.
func startKeygate(bin, dir string, metrics bool) (*target, error) {
	env := []string{"KEYGATE_DATABASE_PATH=" + filepath.Join(dir, "keygate.db")}
	if !metrics {
		env = append(env, "KEYGATE_ADMIN_ADDR=")
	}
	t, err := startKeygateEnv(bin, dir, env, true)
	if err == nil {
		t.metricsOff = !metrics
	}
	return t, err
}

// startKeygateEnv runs the real binary in dir with env added to the
// benchmark's settings, minting a partner with the CLI first if mint.
func startKeygateEnv(bin, dir string, extra []string, mint bool) (*target, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"KEYGATE_SERVER_ADDR=127.0.0.1:0",
		"KEYGATE_ADMIN_ADDR=127.0.0.1:0",
		"KEYGATE_ADMIN_PPROF=true",
		"KEYGATE_LOG_LEVEL=warn",
		"KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_REFRESH_PER_FAMILY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_API_PER_MINUTE=0",
	)
	env = append(env, extra...)
	var minted struct{ APIKey string }
	if mint {
		cmd := exec.Command(bin, "partner", "create", "--name", "bench", "--json")
		cmd.Env, cmd.Dir = env, dir
		outb, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("minting partner: %w", err)
		}
		if err := json.Unmarshal(outb, &minted); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Dir = append(env, "KEYGATE_LOG_LEVEL=info"), dir // the default, access log included
	var admin string
	addr, err := startAndWait(cmd, func(line string) (string, bool) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil {
			switch rec.Msg {
			case "admin listening":
				admin = rec.Addr
			case "keygate listening":
				return rec.Addr, true
			}
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	t := &target{name: "keygate", cmd: cmd, base: "http://" + addr, partnerKey: minted.APIKey}
	if admin != "" {
		t.admin = "http://" + admin
	}
	return t, nil
}

// startSelf runs this program's floor-server or reference-server.
func startSelf(self, command, name string, args ...string) (*target, error) {
	cmd := exec.Command(self, append([]string{command}, args...)...)
	var key string
	addr, err := startAndWait(cmd, func(line string) (string, bool) {
		if k, ok := strings.CutPrefix(line, "KEY "); ok {
			key = k
		}
		if a, ok := strings.CutPrefix(line, "ADDR "); ok {
			return a, true
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	return &target{name: name, cmd: cmd, base: "http://" + addr, partnerKey: key}, nil
}

// startAndWait starts cmd and scans its stdout and stderr until found
// reports the listening address, or 30 seconds pass.
func startAndWait(cmd *exec.Cmd, found func(string) (string, bool)) (string, error) {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return "", err
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if a, ok := found(sc.Text()); ok && !sent {
				addrc <- a
				sent = true
			}
		}
	}()
	select {
	case a := <-addrc:
		return a, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return "", errors.New("server did not report its address within 30s")
	}
}

func stop(t *target) {
	for _, r := range t.more {
		stop(r)
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.cmd.Process.Kill()
	}
}
