//go:build !linux

package main_test

import "errors"

func mountTmpfs(dir, size string) error { return errors.New("tmpfs mounts are Linux only") }

func unmount(dir string) error { return nil }
