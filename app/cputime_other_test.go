//go:build !unix

package app_test

// processCPU cannot be read here.
func processCPU() int64 { return -1 }
