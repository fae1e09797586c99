package service

import "github.com/coupond/coupond/store"

// SetImportChunk sets how many lines an import writes at a time, so that a
// small file crosses chunks.
func SetImportChunk(s *Service, n int) { s.importChunk = n }

// SetBeforeAdvance installs a hook called before a grant job's step is
// recorded, so that a test can kill the job there.
func SetBeforeAdvance(s *Service, fn func(jobID string, step store.AdvanceGrantJob)) {
	s.beforeAdvance = fn
}
