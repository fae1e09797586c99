//go:build !unix

package sqlite_test

// cpuTime cannot be read here: the benchmarks report wall time only.
func cpuTime() int64 { return -1 }
