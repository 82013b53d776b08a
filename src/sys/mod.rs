//! The system layer: every system call of both programs lives below here.

pub mod sockpath;
