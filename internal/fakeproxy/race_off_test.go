//go:build !race

package fakeproxy

const raceEnabled = false
