//go:build !race

package rotation_test

const raceEnabled = false
