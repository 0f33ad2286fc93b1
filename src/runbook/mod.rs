//! The operations guide's runbooks as code: the steps an operator would
//! type, in the same order, with the checks a tired person skips. Kept out
//! of `cmd` so that the daemon can run them too (the flush does:
//! [`flush_job`]); the command line only adds flags, confirmation and output.

pub mod doctor;
pub mod flush;
pub mod flush_job;
pub mod grafana;
pub mod recovery;
pub mod verify;
