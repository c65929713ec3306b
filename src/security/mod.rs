//! Card security: PIN blocks, PIN verification and the keys they use.

pub mod keys;
pub mod pin;
