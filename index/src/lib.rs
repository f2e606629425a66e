//! Placeholder for the index layer; see ARCHITECTURE.md and the open issues.
