package service

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/store"
)

// Partner codes: an external batch's codes come from a CSV file, one code a
// line: code[,amount][,key=value…]. The file is read as a stream and written
// ImportChunk lines at a time, so a file of millions of lines never sits in
// memory. Each bad line is reported by number with a reason, and the good
// lines are kept. The store remembers the line each code came from: a
// re-run of the same file finds every code at its own line and adds
// nothing, while a code that repeats an earlier line is a duplicate of it,
// in this run and in every later one alike.

// Limits of a partner code file.
const (
	MaxImportCodeLength = 64
	MaxImportTags       = 16
	MaxImportTagKey     = 32
	MaxImportTagValue   = 128
	MaxImportLineBytes  = 4096
	// ImportChunk is how many lines one store transaction writes.
	ImportChunk = 5000
	// MaxImportErrors bounds the line reports returned; the counts stay exact.
	MaxImportErrors = 1000
)

// Reasons a line of an import is refused: the code of an ImportLineError.
const (
	ImportBlank     = "blank"     // an empty line
	ImportMalformed = "malformed" // the code, amount or a tag is not well-formed
	ImportDuplicate = "duplicate" // the code repeats an earlier line
	ImportTaken     = "taken"     // the code belongs to another batch
	ImportFull      = "full"      // the batch holds its total quantity
)

// ImportRequest imports a partner's codes into an external batch.
type ImportRequest struct {
	BatchID string
	Body    io.Reader
	// Progress, if set, is called after each chunk is written.
	Progress func(ImportResult)
}

// ImportResult counts the lines of an import. Lines = Imported + Existing +
// Rejected (+ 1 if the file starts with a header line "code,…").
type ImportResult struct {
	BatchID  string `json:"batch_id" doc:"the batch the codes went into"`
	Lines    int64  `json:"lines" doc:"lines read, a header line included"`
	Imported int64  `json:"imported" doc:"codes added to the batch"`
	Existing int64  `json:"existing" doc:"lines whose code an earlier import of the same file added: nothing to do"`
	Rejected int64  `json:"rejected" doc:"lines refused; the first 1000 are in errors"`
	// Errors are the refused lines in order, at most MaxImportErrors.
	Errors          []ImportLineError `json:"errors" doc:"the refused lines in order, at most 1000"`
	ErrorsTruncated bool              `json:"errors_truncated,omitempty" doc:"more lines were refused than errors lists"`
	GeneratedCount  int64             `json:"generated_count" doc:"codes the batch holds after the import"`
}

// ImportLineError is one refused line.
type ImportLineError struct {
	Line   int64  `json:"line" doc:"line number in the file, from 1"`
	Code   string `json:"code" enum:"blank,malformed,duplicate,taken,full" doc:"blank, malformed, duplicate (of an earlier line), taken (by another batch), full (the batch holds its total)"`
	Reason string `json:"reason" doc:"why the line was refused"`
}

// ImportCodes reads a partner code file into an external batch that is not
// ended, and loads the new codes into the engine's pool when the batch is
// live, so that they are claimed like generated codes. A read error of the
// body stops the import; what was written stays, and a re-run completes it.
func (s *Service) ImportCodes(ctx context.Context, req ImportRequest) (*ImportResult, error) {
	if !coupon.ValidID(req.BatchID) {
		return nil, fmt.Errorf("batch %q: %w", req.BatchID, coupon.ErrNotFound)
	}
	b, err := s.store.GetBatch(ctx, req.BatchID)
	if err != nil {
		return nil, unavailable("get batch", notFound("batch", req.BatchID, err))
	}
	if !auth.Sees(ctx, b.MerchantID) {
		return nil, hidden("batch", b.ID)
	}
	switch {
	case b.Source != coupon.SourceExternal:
		return nil, fmt.Errorf("batch %s generates its own codes; import into a batch with source external: %w", b.ID, coupon.ErrConflict)
	case b.Status == coupon.StatusEnded:
		return nil, fmt.Errorf("batch %s has ended: %w", b.ID, coupon.ErrConflict)
	}
	im := &importer{s: s, b: b, res: &ImportResult{BatchID: b.ID, Errors: []ImportLineError{}},
		amounts: coupon.NewAmounts(b.Amount, b.TotalQuantity, 0, 0)}
	r := bufio.NewReaderSize(req.Body, MaxImportLineBytes)
	size := s.importChunk
	if size <= 0 {
		size = ImportChunk
	}
	chunk := make([]store.ImportCode, 0, size)
	for {
		line, err := readLine(r)
		if len(line) > 0 || err == nil || errors.Is(err, errLongLine) {
			im.res.Lines++
			if c, ok := im.parse(im.res.Lines, line, err); ok {
				chunk = append(chunk, c)
			}
		}
		if err != nil && !errors.Is(err, errLongLine) {
			if !errors.Is(err, io.EOF) {
				if ferr := im.flush(ctx, chunk); ferr != nil {
					return nil, ferr
				}
				return nil, fmt.Errorf("read line %d of the file: %w: %w", im.res.Lines+1, coupon.ErrUnavailable, err)
			}
			break
		}
		if len(chunk) == size {
			if err := im.flush(ctx, chunk); err != nil {
				return nil, err
			}
			chunk = chunk[:0]
			if req.Progress != nil {
				req.Progress(*im.res)
			}
		}
	}
	if err := im.flush(ctx, chunk); err != nil {
		return nil, err
	}
	cur, err := s.store.GetBatch(ctx, b.ID)
	if err != nil {
		return nil, unavailable("get batch", err)
	}
	im.res.GeneratedCount = cur.GeneratedCount
	if req.Progress != nil {
		req.Progress(*im.res)
	}
	return im.res, nil
}

var errLongLine = errors.New("line too long")

// readLine returns the next line without its end (\n or \r\n). A line
// longer than the reader's buffer is skipped to its end and reported with
// errLongLine; io.EOF comes with the last line if the file does not end
// with a newline, or alone.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, errLongLine
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if err != nil && len(line) == 0 {
		return nil, err
	}
	if errors.Is(err, io.EOF) {
		return line, nil // the last line; io.EOF comes with the next call
	}
	return line, err
}

type importer struct {
	s       *Service
	b       *coupon.Batch
	res     *ImportResult
	amounts *coupon.Amounts // for lines without an amount
}

func (im *importer) reject(line int64, code, reason string) {
	im.res.Rejected++
	if len(im.res.Errors) < MaxImportErrors {
		im.res.Errors = append(im.res.Errors, ImportLineError{Line: line, Code: code, Reason: reason})
	} else {
		im.res.ErrorsTruncated = true
	}
}

// parse reads one line: ok false if it was refused (and reported) or is the
// header.
func (im *importer) parse(n int64, line []byte, readErr error) (store.ImportCode, bool) {
	if errors.Is(readErr, errLongLine) {
		im.reject(n, ImportMalformed, fmt.Sprintf("the line is longer than %d bytes", MaxImportLineBytes))
		return store.ImportCode{}, false
	}
	if n == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a byte order mark
	}
	if len(bytes.TrimSpace(line)) == 0 {
		im.reject(n, ImportBlank, "the line is blank")
		return store.ImportCode{}, false
	}
	fields := bytes.Split(line, []byte{','})
	code := string(bytes.TrimSpace(fields[0]))
	if n == 1 && code == "code" {
		return store.ImportCode{}, false // a header
	}
	if reason := checkPartnerCode(code); reason != "" {
		im.reject(n, ImportMalformed, "code "+reason)
		return store.ImportCode{}, false
	}
	c := store.ImportCode{Code: code, Line: n}
	for i, f := range fields[1:] {
		f = bytes.TrimSpace(f)
		k, v, isTag := bytes.Cut(f, []byte{'='})
		if !isTag {
			if i != 0 {
				im.reject(n, ImportMalformed, fmt.Sprintf("field %d: %q is not key=value (only the second field may be an amount)", i+2, f))
				return store.ImportCode{}, false
			}
			amount, err := strconv.ParseInt(string(f), 10, 64)
			if err != nil || amount < 1 || amount > coupon.MaxBudget {
				im.reject(n, ImportMalformed, fmt.Sprintf("amount %q must be a whole number of minor units between 1 and %d", f, int64(coupon.MaxBudget)))
				return store.ImportCode{}, false
			}
			c.Amount = amount
			continue
		}
		key, val := string(bytes.TrimSpace(k)), string(bytes.TrimSpace(v))
		if reason := checkTag(key, val); reason != "" {
			im.reject(n, ImportMalformed, fmt.Sprintf("tag %q %s", key, reason))
			return store.ImportCode{}, false
		}
		if c.Tags == nil {
			c.Tags = map[string]string{}
		}
		if _, dup := c.Tags[key]; dup {
			im.reject(n, ImportMalformed, fmt.Sprintf("tag %q is given twice", key))
			return store.ImportCode{}, false
		}
		if len(c.Tags) == MaxImportTags {
			im.reject(n, ImportMalformed, fmt.Sprintf("more than %d tags", MaxImportTags))
			return store.ImportCode{}, false
		}
		c.Tags[key] = val
	}
	if c.Amount == 0 {
		c.Amount = im.amounts.Next()
	}
	return c, true
}

// checkPartnerCode says what is wrong with a partner's code, or "". Codes
// are kept as given (redemption looks them up so), so they are limited to
// characters that survive typing, URLs and CSV alike.
func checkPartnerCode(code string) string {
	if code == "" {
		return "is empty"
	}
	if len(code) > MaxImportCodeLength {
		return fmt.Sprintf("is longer than %d characters", MaxImportCodeLength)
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Sprintf("%q has a character other than letters, digits, '-', '_' and '.'", code)
		}
	}
	return ""
}

func checkTag(key, val string) string {
	if key == "" || len(key) > MaxImportTagKey {
		return fmt.Sprintf("key must be 1 to %d characters", MaxImportTagKey)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "key must use a-z, 0-9, '_', '-' and '.'"
		}
	}
	if len(val) > MaxImportTagValue || !utf8.ValidString(val) {
		return fmt.Sprintf("value must be valid UTF-8 of at most %d bytes", MaxImportTagValue)
	}
	for _, r := range val {
		if r < 0x20 || r == 0x7f {
			return "value must not contain control characters"
		}
	}
	return ""
}

// flush writes a chunk, reports its refused lines and loads what it added
// into the engine when the batch is live.
func (im *importer) flush(ctx context.Context, chunk []store.ImportCode) error {
	if len(chunk) == 0 {
		return nil
	}
	// Conditioned on the version read: the amounts drawn for lines without
	// one are the batch's as it was read, and a draft edited since is
	// refused (it holds no codes yet, or the edit would have been).
	out, err := im.s.store.ImportCodes(ctx, im.b.ID, im.b.Version, chunk)
	if errors.Is(err, store.ErrVersion) {
		return fmt.Errorf("batch %s was edited while its file was being imported; import the file again "+
			"(lines imported already are reported as existing): %w", im.b.ID, coupon.ErrConflict)
	}
	if err != nil {
		return unavailable("import codes", notFound("batch", im.b.ID, err))
	}
	added := false
	for i, o := range out {
		c := chunk[i]
		switch o.Status {
		case store.ImportInserted:
			im.res.Imported++
			added = true
		case store.ImportExists:
			switch {
			case o.BatchID != im.b.ID:
				im.reject(c.Line, ImportTaken, "the code belongs to another batch")
			case o.Line == c.Line:
				im.res.Existing++
			case o.Line == 0:
				im.reject(c.Line, ImportDuplicate, "the batch holds this code already")
			default:
				im.reject(c.Line, ImportDuplicate, fmt.Sprintf("duplicate of line %d", o.Line))
			}
		case store.ImportRepeated:
			im.reject(c.Line, ImportDuplicate, fmt.Sprintf("duplicate of line %d", o.Line))
		case store.ImportFull:
			im.reject(c.Line, ImportFull, fmt.Sprintf("the batch holds its total quantity of %d codes", im.b.TotalQuantity))
		}
	}
	if added {
		return im.s.loadImported(ctx, im.b.ID)
	}
	return nil
}

// loadImported loads a live batch's imported codes into the engine: the
// replenish of an external batch only loads what the store holds and the
// engine lacks, under the batch's replenish lease. If another instance holds
// the lease it waits for it a while; a range still missing after that is
// loaded by the next replenish (the replenisher lists external batches
// whose engine lags), so the import does not fail for it.
func (s *Service) loadImported(ctx context.Context, batchID string) error {
	for range 3 {
		b, err := s.store.GetBatch(ctx, batchID)
		if err != nil {
			return unavailable("get batch", err)
		}
		if b.Status != coupon.StatusActive && b.Status != coupon.StatusPaused {
			return nil // publication loads the whole pool
		}
		st, err := s.engine.Stats(ctx, batchID)
		switch {
		case errors.Is(err, engine.ErrUnknownBatch):
		case err != nil:
			return unavailable("engine stats", err)
		case st.LoadedSeq >= b.GeneratedCount:
			return nil
		}
		if _, _, err := s.replenishes.do(ctx, batchID, func() (ReplenishResult, error) {
			return s.replenish(ctx, batchID, true)
		}); err != nil {
			return err
		}
	}
	return nil
}

// isPartnerCode reports whether code, as given, is a code of an external
// batch: such codes have no check character to verify.
func (s *Service) isPartnerCode(ctx context.Context, code string) bool {
	if checkPartnerCode(code) != "" {
		return false
	}
	c, err := s.store.GetCode(ctx, code)
	if err != nil {
		return false
	}
	b, err := s.batches.get(ctx, c.BatchID)
	return err == nil && b.Source == coupon.SourceExternal
}
