//! Scripted scenarios (TOML). Placeholder until the format lands.
