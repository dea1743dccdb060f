package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/viper"

	"keygate/gateway"
)

// loadConfig reads the defaults, then the config file (path, else
// $KEYGATE_CONFIG, else ./config.yaml if present), then KEYGATE_*
// environment variables, and parses and validates the result. It fails
// closed, naming every bad key at once: unknown keys in the file and
// misspelt KEYGATE_ variables included.
func loadConfig(path string) (gateway.Config, error) {
	v := viper.New()
	for _, s := range gateway.Settings {
		v.SetDefault(s.Key, s.Default)
	}
	v.SetEnvPrefix("KEYGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	v.AllowEmptyEnv(true) // KEYGATE_ADMIN_ADDR= turns the admin listener off

	if path == "" {
		path = os.Getenv("KEYGATE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat("config.yaml"); err == nil {
			path = "config.yaml"
		}
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return gateway.Config{}, fmt.Errorf("reading config %s: %w", path, err)
		}
	}

	var unknown []string
	known := make(map[string]bool, len(gateway.Settings))
	knownEnv := map[string]bool{"KEYGATE_CONFIG": true}
	for _, s := range gateway.Settings {
		known[s.Key] = true
		knownEnv["KEYGATE_"+strings.ToUpper(strings.ReplaceAll(s.Key, ".", "_"))] = true
	}
	for _, k := range v.AllKeys() {
		if !known[k] {
			unknown = append(unknown, k+": unknown key")
		}
	}
	// A misspelt variable would otherwise be ignored without a word.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "KEYGATE_") && !knownEnv[name] {
			unknown = append(unknown, name+": unknown environment variable")
		}
	}
	cfg, err := gateway.Parse(v.Get)
	var bad *gateway.ConfigError
	if errors.As(err, &bad) {
		unknown = append(unknown, bad.Problems...)
	} else if err != nil {
		return gateway.Config{}, err
	}
	if len(unknown) > 0 {
		return gateway.Config{}, &gateway.ConfigError{Problems: unknown}
	}
	return cfg, nil
}
