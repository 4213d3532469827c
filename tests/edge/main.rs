//! Black-box tests of the edge (`/v1`), each run on both backends.

mod batch;
mod coalesce;
mod faults;
mod grafana;
mod hostile;
mod lean;
mod limits;
mod metrics;
mod multi;
mod publish;
mod reauth;
mod replay;
mod request_ids;
mod security;
mod slow;
mod tokens;
mod wire;
