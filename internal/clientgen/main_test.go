package main

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/coupond/coupond/httpapi"
)

// The client in the repository is what the generator makes of the API's
// description today: change the API, then run go generate ./client.
func TestClientIsUpToDate(t *testing.T) {
	t.Parallel()
	spec, err := json.Marshal(httpapi.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(spec, "client")
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../client/client_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, have) {
		t.Fatal("client/client_gen.go is stale: run go generate ./client")
	}
}

func TestGoNames(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"list-user-claims": "ListUserClaims", "next_cursor": "NextCursor", "id": "ID", "user_id": "UserID",
		"Idempotency-Key": "IdempotencyKey", "order_system_url": "OrderSystemURL",
	} {
		if got := goName(in); got != want {
			t.Errorf("goName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := lowerName("user_id"); got != "userID" {
		t.Errorf("lowerName(user_id) = %q", got)
	}
}
