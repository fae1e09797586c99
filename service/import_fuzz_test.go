package service

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/coupond/coupond/coupon"
)

// FuzzImportLines feeds any bytes to the CSV reader and line parser of an
// import: nothing panics, every line is counted once, and what is accepted
// is a well-formed partner code with a positive amount and valid tags.
func FuzzImportLines(f *testing.F) {
	for _, seed := range []string{
		"code,amount\nA-1,500,tier=gold\n\nA-1\n", "x\r\ny,1,a=b,c=d\n", "bad code!\n,5\n", "A,0\nB,-1\nC,1e3\nD,9999999999999999999\n",
		"A,k=v,k=v\n", "\xef\xbb\xbfcode\nA\n", "A,=v\nB,K=v\nC,k=\x01\n",
	} {
		f.Add([]byte(seed))
	}
	b := &coupon.Batch{BatchSpec: coupon.BatchSpec{TotalQuantity: 100,
		Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		im := &importer{b: b, res: &ImportResult{}, amounts: coupon.NewAmounts(b.Amount, b.TotalQuantity, 0, 0)}
		r := bufio.NewReaderSize(bytes.NewReader(data), 16) // small, to exercise long lines
		accepted := int64(0)
		for {
			line, err := readLine(r)
			if len(line) > 0 || err == nil || errors.Is(err, errLongLine) {
				im.res.Lines++
				if c, ok := im.parse(im.res.Lines, line, err); ok {
					accepted++
					if c.Code == "" || checkPartnerCode(c.Code) != "" || c.Amount < 1 || len(c.Tags) > MaxImportTags || c.Line != im.res.Lines {
						t.Fatalf("accepted a bad line %d: %+v", im.res.Lines, c)
					}
					for k, v := range c.Tags {
						if checkTag(k, v) != "" {
							t.Fatalf("accepted a bad tag %q=%q", k, v)
						}
					}
				}
			}
			if err != nil && !errors.Is(err, errLongLine) {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
		}
		header := int64(0)
		if bytes.HasPrefix(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), []byte("code")) {
			header = im.res.Lines - accepted - im.res.Rejected // at most the one header line
		}
		if accepted+im.res.Rejected+header != im.res.Lines || header > 1 || header < 0 {
			t.Fatalf("lines %d: accepted %d, rejected %d", im.res.Lines, accepted, im.res.Rejected)
		}
	})
}
