-- The rest of the control plane: channel settings and tenant-level defaults, signing keys, slugs of
-- deleted tenants, the audit log and daily usage. Same conventions as 0001: bigint unix-ms timestamps,
-- JSON text lists, no boolean columns. migrations/postgres holds the same schema.

-- Channel defaults: what a channel that has no row of its own uses.
alter table tenants add column default_visibility text not null default 'public'
    check (default_visibility in ('public', 'private'));
alter table tenants add column default_history_size bigint not null default 100;
alter table tenants add column default_history_ttl_seconds bigint not null default 86400;

-- A channel has a row once it was created or patched through the admin API.
create table channels (
    tenant_id           bigint not null references tenants (id) on delete cascade,
    name                text   not null,
    visibility          text   not null check (visibility in ('public', 'private')),
    history_size        bigint not null,
    history_ttl_seconds bigint not null,
    created_at          bigint not null,
    updated_at          bigint not null,
    primary key (tenant_id, name)
);

-- HS256 secrets for subscriber tokens. The current key has no `expires_at`; a rotated-out key
-- verifies until its `expires_at`, then is deleted.
create table signing_keys (
    tenant_id  bigint not null references tenants (id) on delete cascade,
    kid        text   not null,
    secret     text   not null,
    created_at bigint not null,
    expires_at bigint,
    primary key (tenant_id, kid)
);

-- A deleted tenant's slug cannot be taken again until `reusable_at`.
create table retired_slugs (
    slug        text   primary key,
    reusable_at bigint not null
);

-- Every change made through the admin API or by an operator, newest first by id.
create table audit_log (
    id        integer primary key autoincrement,
    tenant_id bigint not null references tenants (id) on delete cascade,
    actor     text   not null, -- `account:<email>`, `key:<key id>` or `operator`
    action    text   not null, -- e.g. `channel.update`
    target    text,            -- what the action was applied to, e.g. the channel name
    ip        text,
    details   text,            -- JSON object, or null
    at        bigint not null
);

create index audit_log_tenant on audit_log (tenant_id, id);

-- Daily rollups per tenant; `day` is days since the unix epoch (UTC).
create table usage_daily (
    tenant_id        bigint not null references tenants (id) on delete cascade,
    day              bigint not null,
    messages         bigint not null default 0,
    deliveries       bigint not null default 0,
    bytes_out        bigint not null default 0,
    peak_connections bigint not null default 0,
    primary key (tenant_id, day)
);

-- Failed logins, for throttling per IP and per email across admin processes.
create table login_failures (
    key text   not null, -- `ip:<address>` or `email:<sha-256 hex of the address>`
    at  bigint not null
);

create index login_failures_key on login_failures (key, at);
