//go:build race

package app_test

// raceDetector is true when the tests run under the race detector, which
// slows the claim path tenfold (SQLite, pure Go here, far more).
const raceDetector = true
