//! nitro: a tiny init system and process supervisor, compatible with the C
//! nitro (service directories, control protocol, event sockets).
//!
//! - [`spat`]: the SPAT packet codec (pure, total, no allocation).
//! - [`proto`]: tag and state numbers, names, request decoding.
//! - [`core`]: the deterministic supervisor: service table, state machine,
//!   logging wiring, rescan and shutdown. It talks to the world only
//!   through the [`core::Os`] trait and gets the time as an argument.
//! - [`sys`]: the only place that makes system calls and holds `unsafe`.
//! - [`client`]: `nitroctl`'s side of the protocol: requests, decoding
//!   replies and events.
//! - [`alloc_count`]: the allocation counter behind the zero-allocation
//!   promise (in `sys`, as a global allocator is `unsafe` code).

pub mod client;
pub mod core;
pub mod proto;
pub mod spat;
pub mod sys;

pub use sys::alloc_count;
