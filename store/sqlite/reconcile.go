package sqlite

import (
	"context"
	"encoding/json"
)

// ClaimedCodes returns those of codes that a claim holds.
func (s *Store) ClaimedCodes(ctx context.Context, codes []string) ([]string, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	rows, err := s.reader.QueryContext(ctx, `SELECT code FROM claims_all WHERE code IN (SELECT value FROM json_each(?))`, jsonStrings(codes))
	if err != nil {
		return nil, wrap("claimed codes", err)
	}
	var out []string
	err = eachRow(rows, func() error {
		var c string
		if err := rows.Scan(&c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, wrap("claimed codes", err)
	}
	return out, nil
}

// jsonStrings encodes strings as a JSON array for json_each.
func jsonStrings(xs []string) string {
	b, _ := json.Marshal(xs) // strings always marshal
	return string(b)
}
