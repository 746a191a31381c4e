//! DNS messages as the daemon handles them: client queries, upstream answers and the TTLs
//! they age by, and the replies made from them.

pub mod answer;
pub mod bare_reply;
pub mod clock;
pub mod query;
pub mod reply;
pub mod ttl;
pub mod wire_hit;
