package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/auth"
)

// operationRoles is the one table of who may call what. Every /v1 operation
// must be in it (New panics otherwise, and a test checks it), so a new
// endpoint cannot ship without a decision. A merchant is further confined to
// its own merchant's batches, claims and redemptions by the service.
var operationRoles = map[string][]auth.Role{
	"create-batch":  {auth.Admin, auth.Operator, auth.Merchant},
	"list-batches":  {auth.Admin, auth.Operator, auth.Merchant},
	"get-batch":     {auth.Admin, auth.Operator, auth.Merchant, auth.App},
	"update-batch":  {auth.Admin, auth.Operator, auth.Merchant},
	"publish-batch": {auth.Admin, auth.Operator, auth.Merchant},
	"pause-batch":   {auth.Admin, auth.Operator, auth.Merchant},
	"resume-batch":  {auth.Admin, auth.Operator, auth.Merchant},
	"end-batch":     {auth.Admin, auth.Operator, auth.Merchant},

	"claim":            {auth.Admin, auth.App},
	"list-user-claims": {auth.Admin, auth.Operator, auth.Merchant, auth.App},
	"get-claim":        {auth.Admin, auth.Operator, auth.Merchant, auth.App},
	"get-code":         {auth.Admin, auth.Operator, auth.Merchant, auth.App},

	// Passive distribution; a merchant only for its own batches (the service checks).
	"import-codes":     {auth.Admin, auth.Operator, auth.Merchant},
	"grant":            {auth.Admin, auth.Operator, auth.Merchant},
	"create-grant-job": {auth.Admin, auth.Operator, auth.Merchant},
	"get-job":          {auth.Admin, auth.Operator, auth.Merchant},

	"qualify":                  {auth.Admin, auth.App},
	"reserve":                  {auth.Admin, auth.App},
	"redeem-code":              {auth.Admin, auth.App, auth.Merchant},
	"get-redemption":           {auth.Admin, auth.Operator, auth.Merchant, auth.App},
	"get-order-redemption":     {auth.Admin, auth.Operator, auth.Merchant, auth.App},
	"confirm-redemption":       {auth.Admin, auth.App},
	"cancel-redemption":        {auth.Admin, auth.App},
	"confirm-order-redemption": {auth.Admin, auth.App},
	"cancel-order-redemption":  {auth.Admin, auth.App},
	"refund-redemption":        {auth.Admin, auth.App},
	"refund-order-redemption":  {auth.Admin, auth.App},
	"list-reviews":             {auth.Admin, auth.Operator},
	"resolve-review":           {auth.Admin, auth.Operator},

	"user-badges":        {auth.Admin, auth.Operator, auth.App},
	"search-claims":      {auth.Admin, auth.Operator, auth.Merchant},
	"export-claims":      {auth.Admin, auth.Operator, auth.Merchant},
	"search-codes":       {auth.Admin, auth.Operator, auth.Merchant},
	"search-redemptions": {auth.Admin, auth.Operator, auth.Merchant},
	"batch-stats":        {auth.Admin, auth.Operator, auth.Merchant},
	"merchant-stats":     {auth.Admin, auth.Operator, auth.Merchant},
	"product-tags":       {auth.Admin, auth.Operator, auth.Merchant, auth.App},

	"create-key": {auth.Admin},
	"list-keys":  {auth.Admin},
	"get-key":    {auth.Admin},
	"revoke-key": {auth.Admin},
	"rotate-key": {auth.Admin},

	"add-list-entries":          {auth.Admin, auth.Operator},
	"remove-list-entries":       {auth.Admin, auth.Operator},
	"list-list-entries":         {auth.Admin, auth.Operator},
	"add-batch-list-entries":    {auth.Admin, auth.Operator, auth.Merchant},
	"remove-batch-list-entries": {auth.Admin, auth.Operator, auth.Merchant},
	"list-batch-list-entries":   {auth.Admin, auth.Operator, auth.Merchant},
	"create-sms-challenge":      {auth.Admin, auth.App},
	"put-risk-rule-set":         {auth.Admin, auth.Operator},
	"list-risk-rule-sets":       {auth.Admin, auth.Operator},
	"get-risk-rule-set":         {auth.Admin, auth.Operator},
	"delete-risk-rule-set":      {auth.Admin, auth.Operator},
	"list-refusals":             {auth.Admin, auth.Operator, auth.Merchant},

	"list-switches": {auth.Admin},
	"set-switch":    {auth.Admin},
}

// documentRoles writes each operation's roles into its OpenAPI description,
// after every operation is registered.
func documentRoles(api huma.API) {
	for path, item := range api.OpenAPI().Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			roles, ok := operationRoles[op.OperationID]
			if !ok {
				panic(fmt.Sprintf("httpapi: operation %s (%s %s) has no entry in operationRoles", op.OperationID, op.Method, path))
			}
			if op.Extensions == nil {
				op.Extensions = map[string]any{}
			}
			op.Extensions["x-roles"] = roles
			names := make([]string, len(roles))
			for i, r := range roles {
				names[i] = string(r)
			}
			op.Description += "\n\nAllowed roles: " + strings.Join(names, ", ") + "."
		}
	}
}

// requireRoles admits a /v1 operation's caller only in a role the table
// names; others get 403 `forbidden`. It must be installed before the
// operations are registered.
func requireRoles(api huma.API) {
	api.UseMiddleware(func(ctx huma.Context, next func(huma.Context)) {
		op := ctx.Operation()
		if !strings.HasPrefix(op.Path, "/v1/") {
			next(ctx)
			return
		}
		p, ok := auth.From(ctx.Context())
		if !ok || !slices.Contains(operationRoles[op.OperationID], p.Role) {
			_ = huma.WriteErr(api, ctx, http.StatusForbidden,
				fmt.Sprintf("a %s credential may not call %s", p.Role, op.OperationID))
			return
		}
		next(ctx)
	})
}
