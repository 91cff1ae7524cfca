//go:build race

package fakeproxy

const raceEnabled = true
