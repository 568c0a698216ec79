//! `strata-tiering`: object storage for sealed log segments.
//!
//! # Overview
//! The broker hands this crate a description of a sealed segment (files, base offset, last
//! offset, leader epoch, max timestamp) and asks it for bytes back. It depends on nothing in the
//! broker. The upload, manifest and remote-read machinery arrives with tiered storage.
