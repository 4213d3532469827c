-- The control plane's first tables: settings, accounts and their sessions, tenants, memberships, API keys.
--
-- The same queries run on Postgres and SQLite through sqlx's Any driver, which knows only integers, floats,
-- text and blobs. So: timestamps are unix milliseconds in bigint columns, lists are JSON text, and flags are
-- nullable timestamps (`revoked_at`, `suspended_at`). migrations/postgres holds the same schema in Postgres's dialect;
-- only the identity columns differ. Foreign keys are enforced: sqlx turns `pragma foreign_keys` on.
-- Secrets are never stored: sessions and API keys by the SHA-256 hex of the token, passwords as argon2id hashes.

create table settings (
    key   text primary key,
    value text not null
);

create table accounts (
    id            integer primary key autoincrement,
    email         text   not null unique, -- lowercased by herald_core::Email, so unique ignores case
    password_hash text   not null,
    created_at    bigint not null
);

create table sessions (
    token_hash text   primary key,
    account_id bigint not null references accounts (id) on delete cascade,
    created_at bigint not null,
    expires_at bigint not null
);

create index sessions_account_id on sessions (account_id);

create table tenants (
    id              integer primary key autoincrement,
    slug            text   not null unique,
    name            text   not null,
    plan            text   not null default 'free',
    allowed_origins text   not null default '["*"]',
    suspended_at    bigint,
    created_at      bigint not null
);

create table memberships (
    tenant_id  bigint not null references tenants (id) on delete cascade,
    account_id bigint not null references accounts (id) on delete cascade,
    role       text   not null check (role in ('owner', 'admin', 'viewer')),
    created_at bigint not null,
    primary key (tenant_id, account_id)
);

create index memberships_account_id on memberships (account_id);

create table api_keys (
    id           text   primary key, -- the public key id: the 8 characters after `hk_`
    tenant_id    bigint not null references tenants (id) on delete cascade,
    name         text   not null,
    secret_hash  text   not null,     -- SHA-256 hex of the whole key
    scopes       text   not null,     -- JSON array of scope names
    channels     text,                -- JSON array of channel patterns; null = every channel
    created_at   bigint not null,
    last_used_at bigint,
    revoked_at   bigint
);

create index api_keys_tenant_id on api_keys (tenant_id, created_at);
