//! The middle of the data flow: per-series windows ([`window`], [`ring`], [`sketch`]) and
//! the task that owns them ([`aggregate`]).

pub mod aggregate;
pub mod ring;
pub mod sketch;
pub mod window;
