-- A counter of each tenant's channel settings: every create, change or removal of a channel's own
-- row raises it, in the same transaction. Edges cache a channel's settings with the counter they
-- were read under, and trust them while the tenant row they read (itself re-read every second)
-- carries the same counter: a channel that is used but never changed costs no query per event.
-- migrations/postgres holds the same schema.
alter table tenants add column channels_version bigint not null default 0;
