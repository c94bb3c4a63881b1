//! The Kafka event log backend. (In progress.)
