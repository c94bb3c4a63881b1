//! Captured events: what capture writes to the log, and how an SDK's event becomes one.
