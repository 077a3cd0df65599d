//! The middle of the data flow: per-series windows ([`window`], [`ring`], [`sketch`]) and
//! the task that owns them ([`aggregate`]), with when windows close in [`timeline`].

pub mod aggregate;
pub mod ring;
pub mod sketch;
pub mod timeline;
pub mod window;
