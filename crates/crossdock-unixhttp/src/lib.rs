//! Tiny HTTP/1.1 over a unix socket: client and server helpers for the health socket and the lab.
