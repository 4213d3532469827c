//! Black-box tests of the admin API (`/api/v1`), each run on both backends.

mod accounts;
mod keys;
mod openapi;
