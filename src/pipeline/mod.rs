//! The middle of the data flow: per-series windows ([`window`], [`ring`], [`sketch`]) and
//! the task that owns them ([`aggregate`]), with when windows close in [`timeline`].

pub mod aggregate;
pub mod field_names;
pub mod metrics;
pub mod persist;
pub mod ring;
pub mod sketch;
mod sketch_counts;
pub mod status;
pub mod timeline;
pub mod window;

pub use metrics::{AggregatorMetrics, DropReason};
