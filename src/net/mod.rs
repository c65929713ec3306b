//! The network edge: listeners, TLS, connections and framing. One reader task and one
//! writer task per connection, bounded everywhere (design.md, "net").

pub mod connection;
pub mod framing;
pub mod listener;
pub mod tls;

pub use listener::{serve_listener, NetContext};
