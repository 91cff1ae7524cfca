//go:build !linux

package testutil

import "errors"

func mount(string, string) error { return errors.New("tmpfs mounts are Linux only") }

func unmount(string) error { return nil }
