//! Placeholder for the query layer; see ARCHITECTURE.md and the open issues.
