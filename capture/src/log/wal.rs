//! The embedded event log: a segmented append-only WAL under the data dir. (In progress.)
