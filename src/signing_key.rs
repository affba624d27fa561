//! Server signing keys (filled in next).
