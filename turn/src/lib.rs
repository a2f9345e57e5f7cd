//! The embedded TURN server lives here once it is built (see the project's TURN issue).
//! Until then this crate is deliberately empty: join responses carry no TURN servers, and
//! `docs/` says so, rather than pretending to a relay that does not exist.
