//! The example API over real HTTP on 127.0.0.1: one integration binary.

mod caching;
mod faults;
mod limits;
mod pagination;
mod strict;
mod support;
mod writes;
