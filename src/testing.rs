//! Test-double helpers.
