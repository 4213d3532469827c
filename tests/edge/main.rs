//! Black-box tests of the edge (`/v1`), each run on both backends.

mod publish;
mod replay;
mod wire;
