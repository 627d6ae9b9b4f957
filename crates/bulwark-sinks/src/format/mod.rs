//! Pure formatters: a [`Notice`](crate::Notice) in, bytes out. No I/O, no
//! clock (every time comes from the notice), so each is unit-tested against
//! its specification.

pub mod cef;
pub mod json;
pub mod syslog;
