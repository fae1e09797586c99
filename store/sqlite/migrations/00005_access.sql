-- Access control and anti-fraud: API keys, black and white lists, risk rule
-- sets, the record of refusals, and the devices of claims whose batch counts
-- its per-user limit across devices.

-- +goose Up
-- A key's secret is never stored: salt derives it with the server's key
-- secret, and secret_hash (SHA-256) checks a bearer token.
CREATE TABLE api_keys (
    id                   TEXT    NOT NULL PRIMARY KEY,
    name                 TEXT    NOT NULL DEFAULT '',
    role                 TEXT    NOT NULL,
    merchant_id          TEXT    NOT NULL DEFAULT '',
    salt                 TEXT    NOT NULL,
    secret_hash          TEXT    NOT NULL,
    previous_salt        TEXT    NOT NULL DEFAULT '',
    previous_secret_hash TEXT    NOT NULL DEFAULT '',
    previous_expires_at  INTEGER,
    created_at           INTEGER NOT NULL,
    rotated_at           INTEGER,
    revoked_at           INTEGER,
    CONSTRAINT api_keys_role CHECK (role IN ('admin', 'operator', 'merchant', 'app')),
    CONSTRAINT api_keys_merchant CHECK ((role = 'merchant') = (merchant_id <> ''))
) STRICT;

-- scope is '' for the global lists, a batch id for a batch's own. A removed
-- entry stays as a tombstone so that replicas, which follow the versions,
-- learn of its removal. Versions come from list_version, whose one row every
-- writer of lists updates first: writers take turns, and versions are
-- committed in order.
CREATE TABLE list_entries (
    scope      TEXT    NOT NULL,
    list       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    version    INTEGER NOT NULL,
    removed    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope, list, kind, value),
    CONSTRAINT list_entries_list CHECK (list IN ('blacklist', 'whitelist')),
    CONSTRAINT list_entries_kind CHECK (kind IN ('user', 'phone', 'device', 'ip'))
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX list_entries_version ON list_entries (version);

CREATE TABLE list_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
) STRICT;

INSERT INTO list_version (id, version) VALUES (1, 0);

CREATE TABLE risk_rule_sets (
    name       TEXT    NOT NULL PRIMARY KEY,
    rules      TEXT    NOT NULL,
    external   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE refusals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    code        TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    batch_id    TEXT    NOT NULL DEFAULT '',
    merchant_id TEXT    NOT NULL DEFAULT '',
    user_id     TEXT    NOT NULL DEFAULT '',
    phone       TEXT    NOT NULL DEFAULT '',
    device_id   TEXT    NOT NULL DEFAULT '',
    ip          TEXT    NOT NULL DEFAULT '',
    key_id      TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX refusals_batch ON refusals (batch_id, id);
CREATE INDEX refusals_merchant ON refusals (merchant_id, id);
CREATE INDEX refusals_user ON refusals (user_id, id);

CREATE TABLE claim_devices (
    claim_id  TEXT NOT NULL PRIMARY KEY,
    batch_id  TEXT NOT NULL,
    device_id TEXT NOT NULL
) STRICT;

CREATE INDEX claim_devices_batch ON claim_devices (batch_id, device_id);

-- +goose Down
DROP TABLE claim_devices;
DROP TABLE refusals;
DROP TABLE risk_rule_sets;
DROP TABLE list_version;
DROP TABLE list_entries;
DROP TABLE api_keys;
