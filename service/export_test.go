package service

import "github.com/coupond/coupond/coupon"

// SetBeforeWrite installs a hook called between drawing codes and writing
// them, so that a test can pause a generator there. Set it before the
// service is used.
func SetBeforeWrite(s *Service, fn func(batchID string, from int64, codes []coupon.Code)) {
	s.beforeWrite = fn
}
