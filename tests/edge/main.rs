//! Black-box tests of the edge (`/v1`), each run on both backends.

mod faults;
mod multi;
mod publish;
mod replay;
mod tokens;
mod wire;
