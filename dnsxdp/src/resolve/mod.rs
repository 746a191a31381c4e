//! Answering a question: the daemon's cache, coalescing of questions already on their way
//! upstream, and the log of what was answered.

pub mod cache;
pub mod counters;
pub mod flight;
pub mod lists;
pub mod query_log;
mod resolver;
pub mod settings;

pub use self::resolver::Resolver;
