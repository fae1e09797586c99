package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/service"
)

// maxListBody bounds a body of list entries: 10,000 entries with reasons.
const maxListBody = 4 << 20

// ListEntriesBody adds entries to a list, or removes them.
type ListEntriesBody struct {
	Entries []ListEntryBody `json:"entries" minItems:"1" maxItems:"10000" doc:"at most 10,000 a call: a list of millions is loaded in several calls"`
}

// ListEntryBody is one entry.
type ListEntryBody struct {
	Kind   string `json:"kind" enum:"user,phone,device,ip" doc:"what value names"`
	Value  string `json:"value" minLength:"1" maxLength:"128" doc:"a user id, a phone number (digits, optional leading +), a device id, or an IP address or CIDR prefix such as 203.0.113.0/24"`
	Reason string `json:"reason,omitempty" maxLength:"500" doc:"why, for operators (ignored when removing)"`
}

// ListChangeBody is the outcome of a change of a list.
type ListChangeBody struct {
	Added   int `json:"added,omitempty" doc:"entries added or updated"`
	Removed int `json:"removed,omitempty" doc:"entries that were on the list and are no more"`
}

// EntryList is one page of a list's entries.
type EntryList struct {
	Items      []access.Entry `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

// The inputs of the operations spell their parameters out: huma does not
// read parameters of embedded unexported structs.
type (
	globalEntriesInput struct {
		List string `path:"list" enum:"blacklist,whitelist" doc:"blacklist: refused (blocked); whitelist: admitted to whitelist-only batches, and on the global whitelist exempt from risk rules"`
		Body ListEntriesBody
	}
	batchEntriesInput struct {
		ID   string `path:"id" maxLength:"64" doc:"batch id"`
		List string `path:"list" enum:"blacklist,whitelist" doc:"blacklist: refused (blocked); whitelist: admitted when the batch is whitelist-only"`
		Body ListEntriesBody
	}
	globalEntryQuery struct {
		List   string `path:"list" enum:"blacklist,whitelist" doc:"blacklist: refused (blocked); whitelist: admitted to whitelist-only batches, and on the global whitelist exempt from risk rules"`
		Kind   string `query:"kind" enum:"user,phone,device,ip" doc:"only entries of this kind"`
		Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor string `query:"cursor" maxLength:"400" doc:"next_cursor of the previous page"`
	}
	batchEntryQuery struct {
		ID     string `path:"id" maxLength:"64" doc:"batch id"`
		List   string `path:"list" enum:"blacklist,whitelist" doc:"blacklist: refused (blocked); whitelist: admitted when the batch is whitelist-only"`
		Kind   string `query:"kind" enum:"user,phone,device,ip" doc:"only entries of this kind"`
		Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor string `query:"cursor" maxLength:"400" doc:"next_cursor of the previous page"`
	}
)

func entryInputs(in []ListEntryBody) []service.ListEntryInput {
	out := make([]service.ListEntryInput, len(in))
	for i, e := range in {
		out[i] = service.ListEntryInput{Kind: access.Kind(e.Kind), Value: e.Value, Reason: e.Reason}
	}
	return out
}

type listChangeOutput struct{ Body ListChangeBody }

type entryListOutput struct{ Body EntryList }

func (h *handlers) addEntries(ctx context.Context, ref service.ListRef, in ListEntriesBody) (*listChangeOutput, error) {
	n, err := h.svc.AddListEntries(ctx, ref, entryInputs(in.Entries))
	if err != nil {
		return nil, problem(err, "body")
	}
	return &listChangeOutput{ListChangeBody{Added: n}}, nil
}

func (h *handlers) removeEntries(ctx context.Context, ref service.ListRef, in ListEntriesBody) (*listChangeOutput, error) {
	n, err := h.svc.RemoveListEntries(ctx, ref, entryInputs(in.Entries))
	if err != nil {
		return nil, problem(err, "body")
	}
	return &listChangeOutput{ListChangeBody{Removed: n}}, nil
}

func (h *handlers) listEntries(ctx context.Context, ref service.ListRef, kind, cursor string, limit int) (*entryListOutput, error) {
	es, next, err := h.svc.ListEntries(ctx, service.ListEntryQuery{ListRef: ref, Kind: access.Kind(kind), Cursor: cursor, Limit: limit})
	if err != nil {
		return nil, problem(err, "query")
	}
	if es == nil {
		es = []access.Entry{}
	}
	return &entryListOutput{EntryList{Items: es, NextCursor: next}}, nil
}

const (
	listsSync = " The instance that takes the call applies it at once; the others within COUPOND_LIST_SYNC (1s by default). " +
		"Lookups on the claim path read each instance's replica in memory, so a list of millions of entries costs the claim path no round trip."
	globalLists = "The global lists apply to every batch. Managed by admins and operators."
	batchLists  = "A batch's own lists apply to its claims, with the global ones. A merchant manages its own batches' lists."
)

func (h *handlers) registerLists(api huma.API) {
	tags := []string{"lists"}
	global := func(list string) service.ListRef { return service.ListRef{List: access.List(list)} }
	batch := func(id, list string) service.ListRef { return service.ListRef{BatchID: id, List: access.List(list)} }
	const globalPath, batchPath = "/v1/lists/{list}/entries", "/v1/batches/{id}/lists/{list}/entries"

	huma.Register(api, huma.Operation{
		OperationID: "add-list-entries", Method: http.MethodPost, Path: globalPath, Tags: tags,
		Summary:     "Add entries to a global black or white list",
		Description: globalLists + " Adding an entry that is there updates its reason." + listsSync, MaxBodyBytes: maxListBody,
	}, func(ctx context.Context, in *globalEntriesInput) (*listChangeOutput, error) {
		return h.addEntries(ctx, global(in.List), in.Body)
	})
	huma.Register(api, huma.Operation{
		OperationID: "add-batch-list-entries", Method: http.MethodPost, Path: batchPath, Tags: tags,
		Summary:     "Add entries to a batch's black or white list",
		Description: batchLists + " Adding an entry that is there updates its reason." + listsSync, MaxBodyBytes: maxListBody,
	}, func(ctx context.Context, in *batchEntriesInput) (*listChangeOutput, error) {
		return h.addEntries(ctx, batch(in.ID, in.List), in.Body)
	})
	huma.Register(api, huma.Operation{
		OperationID: "remove-list-entries", Method: http.MethodPost, Path: globalPath + "/remove", Tags: tags,
		Summary:     "Remove entries from a global black or white list",
		Description: globalLists + " Entries that are not there are ignored." + listsSync, MaxBodyBytes: maxListBody,
	}, func(ctx context.Context, in *globalEntriesInput) (*listChangeOutput, error) {
		return h.removeEntries(ctx, global(in.List), in.Body)
	})
	huma.Register(api, huma.Operation{
		OperationID: "remove-batch-list-entries", Method: http.MethodPost, Path: batchPath + "/remove", Tags: tags,
		Summary:     "Remove entries from a batch's black or white list",
		Description: batchLists + " Entries that are not there are ignored." + listsSync, MaxBodyBytes: maxListBody,
	}, func(ctx context.Context, in *batchEntriesInput) (*listChangeOutput, error) {
		return h.removeEntries(ctx, batch(in.ID, in.List), in.Body)
	})
	huma.Register(api, huma.Operation{
		OperationID: "list-list-entries", Method: http.MethodGet, Path: globalPath, Tags: tags,
		Summary:     "List the entries of a global black or white list",
		Description: globalLists + " Ordered by kind, then value; keyset-paginated.",
	}, func(ctx context.Context, in *globalEntryQuery) (*entryListOutput, error) {
		return h.listEntries(ctx, global(in.List), in.Kind, in.Cursor, in.Limit)
	})
	huma.Register(api, huma.Operation{
		OperationID: "list-batch-list-entries", Method: http.MethodGet, Path: batchPath, Tags: tags,
		Summary:     "List the entries of a batch's black or white list",
		Description: batchLists + " Ordered by kind, then value; keyset-paginated.",
	}, func(ctx context.Context, in *batchEntryQuery) (*entryListOutput, error) {
		return h.listEntries(ctx, batch(in.ID, in.List), in.Kind, in.Cursor, in.Limit)
	})
}
