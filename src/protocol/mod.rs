//! Glue to the `kafka-protocol` crate and the wire formats Strata reads itself.

pub mod record_batch;
