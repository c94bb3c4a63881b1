//! Unit tests: translation and every rejection.
