//! One event by its id.

use sightline_storage::AttrsAt;

use crate::context::{Names, QueryContext, Sighting};

/// The event with id `id` (its store sequence number) and where its attributes are,
/// if the store holds it and it lies in the context's scope. An event outside the
/// scope is answered exactly like one that does not exist.
pub fn event_by_id(ctx: &QueryContext<'_>, id: u64) -> Option<(Sighting, AttrsAt)> {
    let (row, attrs) = ctx.store.event_by_seq(id)?;
    if ctx.scope.is_some_and(|s| !s.contains(&row.community)) {
        return None;
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    let sighting = names.sightings(&[row]).pop()?;
    Some((sighting, attrs))
}
