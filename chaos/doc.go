// Package chaos holds coupond's fault-injection tests: two coupond
// processes on a private PostgreSQL, Redis and NATS take a steady claim
// load while, in turn, an instance is killed with SIGKILL, Redis restarts
// empty, NATS stops, and PostgreSQL crashes. After the faults every claim
// the load generator saw acknowledged must be in the store and `coupond
// audit` must find nothing.
//
//	go test ./chaos/                                        # the short form CI runs: each fault once
//	COUPOND_CHAOS_ROUNDS=10 go test -v -timeout 30m ./chaos/ # longer, by hand
package chaos
