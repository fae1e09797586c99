package sqlite

import "database/sql"

// Writer returns the store's write connection, for tests that plant a
// failure on it (a TEMP trigger lives on one connection only).
func (s *Store) Writer() *sql.DB { return s.writer }
