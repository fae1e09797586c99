package worker

// StopRequested reports whether Stop has asked the relay's loop to return,
// so that a test can act while Stop is waiting.
func StopRequested(r *OutboxRelay) bool {
	r.ss.mu.Lock()
	defer r.ss.mu.Unlock()
	return r.ss.done != nil && r.ss.stop == nil
}
