-- Access control and anti-fraud: API keys, black and white lists, risk rule
-- sets, the record of refusals, and the devices of claims whose batch counts
-- its per-user limit across devices. The same tables as on SQLite.

-- +goose Up
-- A key's secret is never stored: salt derives it with the server's key
-- secret, and secret_hash (SHA-256) checks a bearer token.
CREATE TABLE api_keys (
    id                   text COLLATE "C" NOT NULL,
    name                 text        NOT NULL DEFAULT '',
    role                 text        NOT NULL,
    merchant_id          text COLLATE "C" NOT NULL DEFAULT '',
    salt                 text        NOT NULL,
    secret_hash          text        NOT NULL,
    previous_salt        text        NOT NULL DEFAULT '',
    previous_secret_hash text        NOT NULL DEFAULT '',
    previous_expires_at  timestamptz,
    created_at           timestamptz NOT NULL,
    rotated_at           timestamptz,
    revoked_at           timestamptz,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_role CHECK (role IN ('admin', 'operator', 'merchant', 'app')),
    CONSTRAINT api_keys_merchant CHECK ((role = 'merchant') = (merchant_id <> ''))
);

-- scope is '' for the global lists, a batch id for a batch's own. A removed
-- entry stays as a tombstone so that replicas, which follow the versions,
-- learn of its removal. Versions come from list_version, whose one row every
-- writer of lists updates first: the row lock makes writers take turns, so
-- versions are committed in order (a sequence would not be).
CREATE TABLE list_entries (
    scope      text COLLATE "C" NOT NULL,
    list       text        NOT NULL,
    kind       text COLLATE "C" NOT NULL,
    value      text COLLATE "C" NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    version    bigint      NOT NULL,
    removed    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT list_entries_pkey PRIMARY KEY (scope, list, kind, value),
    CONSTRAINT list_entries_list CHECK (list IN ('blacklist', 'whitelist')),
    CONSTRAINT list_entries_kind CHECK (kind IN ('user', 'phone', 'device', 'ip'))
);

CREATE UNIQUE INDEX list_entries_version ON list_entries (version);

CREATE TABLE list_version (
    id      integer NOT NULL,
    version bigint  NOT NULL,
    CONSTRAINT list_version_pkey PRIMARY KEY (id),
    CONSTRAINT list_version_one CHECK (id = 1)
);

INSERT INTO list_version (id, version) VALUES (1, 0);

CREATE TABLE risk_rule_sets (
    name       text COLLATE "C" NOT NULL,
    rules      jsonb       NOT NULL,
    external   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT risk_rule_sets_pkey PRIMARY KEY (name)
);

CREATE TABLE refusals (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL,
    code        text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    batch_id    text COLLATE "C" NOT NULL DEFAULT '',
    merchant_id text COLLATE "C" NOT NULL DEFAULT '',
    user_id     text COLLATE "C" NOT NULL DEFAULT '',
    phone       text        NOT NULL DEFAULT '',
    device_id   text        NOT NULL DEFAULT '',
    ip          text        NOT NULL DEFAULT '',
    key_id      text        NOT NULL DEFAULT '',
    CONSTRAINT refusals_pkey PRIMARY KEY (id)
);

CREATE INDEX refusals_batch ON refusals (batch_id, id);
CREATE INDEX refusals_merchant ON refusals (merchant_id, id);
CREATE INDEX refusals_user ON refusals (user_id, id);

CREATE TABLE claim_devices (
    claim_id  text COLLATE "C" NOT NULL,
    batch_id  text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    CONSTRAINT claim_devices_pkey PRIMARY KEY (claim_id)
);

CREATE INDEX claim_devices_batch ON claim_devices (batch_id, device_id);

-- +goose Down
DROP TABLE claim_devices;
DROP TABLE refusals;
DROP TABLE risk_rule_sets;
DROP TABLE list_version;
DROP TABLE list_entries;
DROP TABLE api_keys;
