//go:build !race

package sources

// raceEnabled: the race detector multiplies allocations and time; the
// measurements skip under it.
const raceEnabled = false
