// Package config is coupond's one typed configuration tree, filled from
// defaults, then COUPOND_* environment variables, then command-line flags.
// The defaults run with no setup: SQLite in ./data, the in-memory engine and
// an embedded NATS server.
package config

import (
	"flag"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coupond/coupond/coupon"
)

// Config is the whole configuration of a coupond process.
type Config struct {
	Addr       string // HTTP listen address
	DataDir    string // SQLite database and embedded NATS storage
	AdminToken string // bearer token of /v1; generated per run when empty

	Log struct {
		Format string // auto (text on a terminal, else json), text, json
		Level  string // debug, info, warn, error
	}
	SQLite struct {
		Synchronous string // full or normal
	}
	GroupCommit struct {
		MaxBatch int // claims per transaction; 1 turns group commit off
		Writers  int // transactions written at once; 0: 1 on SQLite, 4 on PostgreSQL
	}
	Postgres struct {
		URL        string // empty: SQLite in DataDir
		ReplicaURL string // optional read replica for queries
	}
	Redis struct {
		URL     string // empty: the in-memory engine
		Cluster bool   // URL names a Redis Cluster (go-redis cluster URL: redis://host:port?addr=host2:port2…)
		Prefix  string // start of every key, so deployments can share a Redis
	}
	NATS struct {
		URL           string // external NATS; empty starts an embedded server
		Listen        string // host:port for the embedded server to listen on; empty: in-process only
		Stream        string // JetStream stream of the events
		SubjectPrefix string // start of every event subject
	}
	// Redemption configures reservations, the order system and expiry.
	Redemption struct {
		OrderSystemURL     string        // order-state endpoint, {order_id} where the id goes; empty: late reservations go to review
		ReservationTimeout time.Duration // a reservation's wait for its confirmation before the order system is asked
		MaxCouponsPerOrder int
		OrdersStream       string // JetStream stream created on the order subjects when none captures them
		PaidSubject        string
		CancelledSubject   string
		RefundedSubject    string
		ExpiringLead       time.Duration // claim.expiring this long before a coupon's validity ends
	}
	// Query configures the query side: the "my coupons" cache and tagging.
	Query struct {
		UserCacheTTL   time.Duration // how long a user's cached claims live without a change
		TagsWebhookURL string        // receives product.tags_changed as POSTs; empty: none
	}
	// Archive configures hot and cold data (docs/data.md): settled claims
	// (and, PostgreSQL, redemptions) leave the hot tables after After,
	// archived ones are dropped after Retention; published events are
	// dropped after OutboxRetention; the statistics remember counted
	// events for StatsDedupeWindow.
	Archive struct {
		After             time.Duration // 0: claims are never archived
		Retention         time.Duration // 0: archived claims are kept forever
		Batch             int           // claims moved per transaction
		OutboxRetention   time.Duration // 0: published events are kept forever
		StatsDedupeWindow time.Duration // longer than any redelivery of an event to the stats consumer
	}
	// Access configures API keys, request signatures and the lists.
	Access struct {
		KeySecret     string        // derives API keys' secrets; shared by every instance
		SignatureSkew time.Duration // how far a signature's timestamp may be from the server's clock
		AppKeysBearer bool          // admit app keys presented as bearer tokens (else they must sign)
		KeyCacheTTL   time.Duration // how long a key read from the store is trusted (revocation delay on other instances)
		ListSync      time.Duration // how often each instance follows changes of the black and white lists
	}
	// SMS configures SMS challenges.
	SMS struct {
		Sender         string // log or webhook
		WebhookURL     string
		WebhookSecret  string // signs webhook bodies (X-Coupond-Signature)
		LogCodes       bool   // the log sender writes codes in full: development only
		TTL            time.Duration
		MaxAttempts    int
		ResendInterval time.Duration
		PerHour        int
		Text           string
	}
	// Risk configures the external risk service.
	Risk struct {
		URL      string        // empty: none
		Timeout  time.Duration // strict bound of one call: the claim waits for it
		FailOpen bool          // on failure, the local rules decide (else the claim gets 503)
	}
	ShutdownTimeout time.Duration
	// Ops tunes how the service bends under load and failure. Zero values
	// take the defaults of app (a negative duration or bound turns one off).
	Ops struct {
		MaxInflightClaims int           // claims served at once; beyond, 503 overloaded
		EngineTimeout     time.Duration // each Redis engine call
		StoreTimeout      time.Duration // each store call (bulk ones get longer)
		BreakerFailures   int           // failures in a row that open a breaker
		BreakerCooldown   time.Duration // how long an open breaker refuses calls
		SwitchesOff       string        // comma-separated switches to start off
		DrainDelay        time.Duration // unready before the listener closes
	}
	// DebugAddr, host:port, serves Go's profiler (/debug/pprof/) for
	// diagnosing a live process; empty: off. Bind it to a loopback address.
	DebugAddr string
}

// option binds one setting to its flag and environment variable.
type option struct {
	flag, env, usage string
	set              func(string) error
	def              string
}

func (c *Config) options() []option {
	str := func(p *string) func(string) error { return func(s string) error { *p = s; return nil } }
	num := func(p *int) func(string) error {
		return func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("not an integer: %q", s)
			}
			*p = n
			return nil
		}
	}
	dur := func(p *time.Duration) func(string) error {
		return func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("not a duration: %q", s)
			}
			*p = d
			return nil
		}
	}
	boolean := func(p *bool) func(string) error {
		return func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("not true or false: %q", s)
			}
			*p = b
			return nil
		}
	}
	oneOf := func(p *string, allowed ...string) func(string) error {
		return func(s string) error {
			for _, a := range allowed {
				if s == a {
					*p = s
					return nil
				}
			}
			return fmt.Errorf("must be one of %s, not %q", strings.Join(allowed, ", "), s)
		}
	}
	return []option{
		{"addr", "COUPOND_ADDR", "HTTP listen address", str(&c.Addr), "127.0.0.1:8080"},
		{"data-dir", "COUPOND_DATA_DIR", "directory of the SQLite database and embedded NATS storage", str(&c.DataDir), "./data"},
		{"admin-token", "COUPOND_ADMIN_TOKEN", "bearer token for /v1 (prefer the environment variable; generated per run when empty)", str(&c.AdminToken), ""},
		{"log-format", "COUPOND_LOG_FORMAT", "auto, text or json", oneOf(&c.Log.Format, "auto", "text", "json"), "auto"},
		{"log-level", "COUPOND_LOG_LEVEL", "debug, info, warn or error", oneOf(&c.Log.Level, "debug", "info", "warn", "error"), "info"},
		{"sqlite-synchronous", "COUPOND_SQLITE_SYNCHRONOUS", "SQLite synchronous mode: full (survives power loss) or normal (survives a process crash)", oneOf(&c.SQLite.Synchronous, "full", "normal"), "full"},
		{"group-commit-max", "COUPOND_GROUP_COMMIT_MAX", "most claims per transaction; 1 turns group commit off", num(&c.GroupCommit.MaxBatch), "256"},
		{"group-commit-writers", "COUPOND_GROUP_COMMIT_WRITERS", "claim transactions written at once; 0: 1 on SQLite, 4 on PostgreSQL", num(&c.GroupCommit.Writers), "0"},
		{"postgres-url", "COUPOND_POSTGRES_URL", "PostgreSQL URL of the store; empty: SQLite in the data dir", str(&c.Postgres.URL), ""},
		{"postgres-replica-url", "COUPOND_POSTGRES_REPLICA_URL", "PostgreSQL read replica for queries; empty: none", str(&c.Postgres.ReplicaURL), ""},
		{"redis-url", "COUPOND_REDIS_URL", "Redis URL of the engine; empty: the in-memory engine (one instance only)", str(&c.Redis.URL), ""},
		{"redis-cluster", "COUPOND_REDIS_CLUSTER", "true: COUPOND_REDIS_URL names a Redis Cluster (redis://host:port?addr=host2:port2…)", boolean(&c.Redis.Cluster), "false"},
		{"redis-prefix", "COUPOND_REDIS_PREFIX", "start of every Redis key, so several deployments can share one Redis", str(&c.Redis.Prefix), "cp:"},
		{"nats-stream", "COUPOND_NATS_STREAM", "JetStream stream of the events", str(&c.NATS.Stream), "COUPOND"},
		{"nats-subject-prefix", "COUPOND_NATS_SUBJECT_PREFIX", "start of every event subject; the stream takes prefix + '>'", str(&c.NATS.SubjectPrefix), "coupond."},
		{"nats-url", "COUPOND_NATS_URL", "external NATS server URL; empty starts an embedded one", str(&c.NATS.URL), ""},
		{"nats-listen", "COUPOND_NATS_LISTEN", "host:port on which the embedded NATS server also accepts TCP clients; empty: none", str(&c.NATS.Listen), ""},
		{"debug-addr", "COUPOND_DEBUG_ADDR", "host:port serving /debug/pprof/ (keep it on loopback); empty: off", str(&c.DebugAddr), ""},
		{"order-system-url", "COUPOND_ORDER_SYSTEM_URL", "order system's order-state endpoint, e.g. https://orders/api/orders/{order_id}; empty: late reservations go to the review list", str(&c.Redemption.OrderSystemURL), ""},
		{"reservation-timeout", "COUPOND_RESERVATION_TIMEOUT", "how long a reservation waits for its confirmation before the order system is asked", dur(&c.Redemption.ReservationTimeout), "15m"},
		{"max-coupons-per-order", "COUPOND_MAX_COUPONS_PER_ORDER", "most coupons one order may use", num(&c.Redemption.MaxCouponsPerOrder), "5"},
		{"orders-stream", "COUPOND_ORDERS_STREAM", "JetStream stream created on the order subjects when no stream captures them", str(&c.Redemption.OrdersStream), "ORDERS"},
		{"orders-paid-subject", "COUPOND_ORDERS_PAID_SUBJECT", "NATS subject of the order system's paid orders", str(&c.Redemption.PaidSubject), "orders.paid"},
		{"orders-cancelled-subject", "COUPOND_ORDERS_CANCELLED_SUBJECT", "NATS subject of the order system's cancelled orders", str(&c.Redemption.CancelledSubject), "orders.cancelled"},
		{"orders-refunded-subject", "COUPOND_ORDERS_REFUNDED_SUBJECT", "NATS subject of the order system's refunds", str(&c.Redemption.RefundedSubject), "orders.refunded"},
		{"expiring-lead", "COUPOND_EXPIRING_LEAD", "how long before a coupon expires claim.expiring is published", dur(&c.Redemption.ExpiringLead), "24h"},
		{"user-cache-ttl", "COUPOND_USER_CACHE_TTL", "how long a user's cached coupons live without a change (a change drops them at once)", dur(&c.Query.UserCacheTTL), "10m"},
		{"tags-webhook-url", "COUPOND_TAGS_WEBHOOK_URL", "URL that receives every product.tags_changed event as a POST; empty: none", str(&c.Query.TagsWebhookURL), ""},
		{"archive-after", "COUPOND_ARCHIVE_AFTER", "settled claims (used, expired, refunded) claimed and last changed this long ago move to the archive, and (PostgreSQL) settled redemptions last changed this long ago once their claims have; longer than any refund may come (e.g. 2160h); 0: never", dur(&c.Archive.After), "0"},
		{"archive-retention", "COUPOND_ARCHIVE_RETENTION", "archived claims claimed (redemptions reserved) this long ago are deleted (PostgreSQL: whole monthly partitions dropped); 0: kept forever", dur(&c.Archive.Retention), "0"},
		{"archive-batch", "COUPOND_ARCHIVE_BATCH", "claims the archiver moves per transaction", num(&c.Archive.Batch), "500"},
		{"outbox-retention", "COUPOND_OUTBOX_RETENTION", "published events created this long ago leave the outbox (PostgreSQL: whole daily partitions dropped, never one holding an unpublished event); 0: kept forever", dur(&c.Archive.OutboxRetention), "168h"},
		{"stats-dedupe-window", "COUPOND_STATS_DEDUPE_WINDOW", "how long the statistics remember an event they counted, so that a redelivery counts once; longer than any redelivery of the bus (at least 10m)", dur(&c.Archive.StatsDedupeWindow), "24h"},
		{"key-secret", "COUPOND_KEY_SECRET", "secret from which API keys' secrets are derived; every instance must share it (prefer the environment variable). Empty: derived from COUPOND_ADMIN_TOKEN if set, else kept in <data-dir>/key-secret", str(&c.Access.KeySecret), ""},
		{"signature-skew", "COUPOND_SIGNATURE_SKEW", "how far a signed request's timestamp may be from the server's clock", dur(&c.Access.SignatureSkew), "5m"},
		{"app-keys-bearer", "COUPOND_APP_KEYS_BEARER", "admit app keys presented as bearer tokens; false: app keys must sign their requests", boolean(&c.Access.AppKeysBearer), "false"},
		{"key-cache-ttl", "COUPOND_KEY_CACHE_TTL", "how long an API key read from the store is trusted: a key revoked on another instance works here at most this long", dur(&c.Access.KeyCacheTTL), "5s"},
		{"list-sync", "COUPOND_LIST_SYNC", "how often each instance applies the changes of the black and white lists made on the others", dur(&c.Access.ListSync), "1s"},
		{"sms-sender", "COUPOND_SMS_SENDER", "how SMS codes are sent: log (to the log, codes masked unless COUPOND_SMS_LOG_CODES) or webhook", oneOf(&c.SMS.Sender, "log", "webhook"), "log"},
		{"sms-webhook-url", "COUPOND_SMS_WEBHOOK_URL", "URL the webhook sender posts each message to", str(&c.SMS.WebhookURL), ""},
		{"sms-webhook-secret", "COUPOND_SMS_WEBHOOK_SECRET", "signs webhook bodies: X-Coupond-Signature: sha256=<hex HMAC-SHA256>; empty: unsigned", str(&c.SMS.WebhookSecret), ""},
		{"sms-log-codes", "COUPOND_SMS_LOG_CODES", "the log sender writes codes in full: for development only, never in production", boolean(&c.SMS.LogCodes), "false"},
		{"sms-ttl", "COUPOND_SMS_TTL", "how long an SMS code can be used", dur(&c.SMS.TTL), "5m"},
		{"sms-max-attempts", "COUPOND_SMS_MAX_ATTEMPTS", "wrong codes that use an SMS challenge up", num(&c.SMS.MaxAttempts), "5"},
		{"sms-resend", "COUPOND_SMS_RESEND", "least time between two SMS challenges of one phone", dur(&c.SMS.ResendInterval), "60s"},
		{"sms-per-hour", "COUPOND_SMS_PER_HOUR", "most SMS challenges of one phone in an hour", num(&c.SMS.PerHour), "5"},
		{"sms-text", "COUPOND_SMS_TEXT", "the SMS text; {code} and {minutes} are replaced", str(&c.SMS.Text), "Your verification code is {code}. It expires in {minutes} minutes."},
		{"risk-url", "COUPOND_RISK_URL", "external risk service that rule sets with external: true ask about each claim; empty: none", str(&c.Risk.URL), ""},
		{"risk-timeout", "COUPOND_RISK_TIMEOUT", "strict bound of one call to the risk service (the claim waits for it)", dur(&c.Risk.Timeout), "200ms"},
		{"risk-fail-open", "COUPOND_RISK_FAIL_OPEN", "true: when the risk service fails, the local rules decide; false: the claim is refused with 503 unavailable", boolean(&c.Risk.FailOpen), "true"},
		{"shutdown-timeout", "COUPOND_SHUTDOWN_TIMEOUT", "how long to finish in-flight work on shutdown", dur(&c.ShutdownTimeout), "30s"},
		{"drain-delay", "COUPOND_DRAIN_DELAY", "on shutdown, how long /readyz answers 503 before the listener closes (let load balancers notice)", dur(&c.Ops.DrainDelay), "0s"},
		{"max-inflight-claims", "COUPOND_MAX_INFLIGHT_CLAIMS", "claims served at once by this instance; beyond, 503 overloaded with Retry-After; -1: no bound", num(&c.Ops.MaxInflightClaims), "1024"},
		{"engine-timeout", "COUPOND_ENGINE_TIMEOUT", "bound of each Redis engine call", dur(&c.Ops.EngineTimeout), "1s"},
		{"store-timeout", "COUPOND_STORE_TIMEOUT", "bound of each store call, waiting for SQLite's one writer included (pool snapshots and code inserts get 2m)", dur(&c.Ops.StoreTimeout), "10s"},
		{"breaker-failures", "COUPOND_BREAKER_FAILURES", "failed calls in a row that open a circuit breaker (engine, replica)", num(&c.Ops.BreakerFailures), "5"},
		{"breaker-cooldown", "COUPOND_BREAKER_COOLDOWN", "how long an open breaker fails calls at once before it tries one", dur(&c.Ops.BreakerCooldown), "5s"},
		{"switches-off", "COUPOND_SWITCHES_OFF", "comma-separated run-time switches to start off: batch_metrics, access_log, stats, tagging, risk_scoring", str(&c.Ops.SwitchesOff), ""},
	}
}

// Load fills a Config from defaults, environ (KEY=value pairs) and args, in
// that order of precedence from low to high. It returns warnings about
// COUPOND_* variables that name no setting.
func Load(fs *flag.FlagSet, args, environ []string) (Config, []string, error) {
	var c Config
	opts := c.options()
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "COUPOND_") {
			env[k] = v
		}
	}
	for _, o := range opts {
		val := o.def
		if v, ok := env[o.env]; ok {
			val = v
			delete(env, o.env)
		}
		if err := o.set(val); err != nil {
			return c, nil, fmt.Errorf("%s: %w", o.env, err)
		}
		fs.Func(o.flag, o.usage+" (env "+o.env+", default "+strconv.Quote(o.def)+")", o.set)
	}
	var warnings []string
	for k := range env {
		if !strings.HasPrefix(k, "COUPOND_TEST_") {
			warnings = append(warnings, "unknown environment variable "+k+" ignored")
		}
	}
	sort.Strings(warnings)
	if err := fs.Parse(args); err != nil {
		return c, warnings, err
	}
	if c.GroupCommit.MaxBatch < 1 || c.GroupCommit.MaxBatch > 4096 {
		return c, warnings, fmt.Errorf("group-commit-max must be between 1 and 4096")
	}
	if c.GroupCommit.Writers < 0 || c.GroupCommit.Writers > 64 {
		return c, warnings, fmt.Errorf("group-commit-writers must be between 0 and 64")
	}
	if c.Postgres.ReplicaURL != "" && c.Postgres.URL == "" {
		return c, warnings, fmt.Errorf("postgres-replica-url needs postgres-url")
	}
	if c.Redis.Cluster && c.Redis.URL == "" {
		return c, warnings, fmt.Errorf("redis-cluster needs redis-url")
	}
	if err := c.validRedemption(); err != nil {
		return c, warnings, err
	}
	if err := c.validAccess(); err != nil {
		return c, warnings, err
	}
	if a := c.Archive; a.After < 0 || a.Retention < 0 || a.Batch < 1 || a.Batch > 10000 ||
		(a.Retention > 0 && a.After > 0 && a.Retention <= a.After) {
		return c, warnings, fmt.Errorf("archive-after and archive-retention must not be negative, retention longer than archive-after, and archive-batch between 1 and 10000")
	}
	if a := c.Archive; a.OutboxRetention < 0 || a.StatsDedupeWindow < 10*time.Minute {
		return c, warnings, fmt.Errorf("outbox-retention must not be negative and stats-dedupe-window must be at least 10m")
	}
	return c, warnings, nil
}

func (c *Config) validRedemption() error {
	r := &c.Redemption
	if r.OrderSystemURL != "" {
		if why := coupon.ValidOrderSystemURL(r.OrderSystemURL); why != "" {
			return fmt.Errorf("order-system-url %s", why)
		}
	}
	if r.ReservationTimeout < time.Second || r.ExpiringLead < 0 {
		return fmt.Errorf("reservation-timeout must be at least 1s and expiring-lead not negative")
	}
	if r.MaxCouponsPerOrder < 1 || r.MaxCouponsPerOrder > coupon.MaxRedemptionCoupons {
		return fmt.Errorf("max-coupons-per-order must be between 1 and %d", coupon.MaxRedemptionCoupons)
	}
	subjects := []string{r.PaidSubject, r.CancelledSubject, r.RefundedSubject}
	for i, s := range subjects {
		if !coupon.ValidSubject(s) || slices.Contains(subjects[:i], s) {
			return fmt.Errorf("the order subjects must be three different NATS subjects without wildcards, not %q", s)
		}
	}
	if r.OrdersStream == "" || strings.ContainsAny(r.OrdersStream, ".*> \t\r\n/\\") {
		return fmt.Errorf("orders-stream %q must be a stream name", r.OrdersStream)
	}
	return nil
}

func (c *Config) validAccess() error {
	a := &c.Access
	switch {
	case a.SignatureSkew < time.Second || a.SignatureSkew > time.Hour:
		return fmt.Errorf("signature-skew must be between 1s and 1h")
	case a.KeyCacheTTL < 0 || a.KeyCacheTTL > time.Minute:
		return fmt.Errorf("key-cache-ttl must be between 0 and 1m")
	case a.ListSync < 10*time.Millisecond || a.ListSync > time.Minute:
		return fmt.Errorf("list-sync must be between 10ms and 1m")
	}
	s := &c.SMS
	switch {
	case s.Sender == "webhook" && s.WebhookURL == "":
		return fmt.Errorf("sms-sender webhook needs sms-webhook-url")
	case s.WebhookURL != "" && !strings.HasPrefix(s.WebhookURL, "http://") && !strings.HasPrefix(s.WebhookURL, "https://"):
		return fmt.Errorf("sms-webhook-url must be an http or https URL")
	case s.TTL < 10*time.Second || s.TTL > time.Hour:
		return fmt.Errorf("sms-ttl must be between 10s and 1h")
	case s.MaxAttempts < 1 || s.MaxAttempts > 100:
		return fmt.Errorf("sms-max-attempts must be between 1 and 100")
	case s.ResendInterval < time.Second || s.ResendInterval > time.Hour:
		return fmt.Errorf("sms-resend must be between 1s and 1h")
	case s.PerHour < 1 || s.PerHour > 1000:
		return fmt.Errorf("sms-per-hour must be between 1 and 1000")
	case !strings.Contains(s.Text, "{code}"):
		return fmt.Errorf("sms-text must contain {code}")
	}
	r := &c.Risk
	switch {
	case r.URL != "" && !strings.HasPrefix(r.URL, "http://") && !strings.HasPrefix(r.URL, "https://"):
		return fmt.Errorf("risk-url must be an http or https URL")
	case r.Timeout < time.Millisecond || r.Timeout > 10*time.Second:
		return fmt.Errorf("risk-timeout must be between 1ms and 10s")
	}
	return nil
}
