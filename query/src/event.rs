//! One event by its id.

use sightline_storage::AttrsAt;

use crate::context::{Names, QueryContext, Sighting};
use crate::Result;

/// The event with id `id` (its store sequence number) and where its attributes are,
/// if the store holds it and it lies in the context's scope. An event outside the
/// scope is answered exactly like one that does not exist. A damaged segment that
/// could hold it is the error.
pub fn event_by_id(ctx: &QueryContext<'_>, id: u64) -> Result<Option<(Sighting, AttrsAt)>> {
    let Some((row, attrs)) = ctx.store.event_by_seq(id)? else {
        return Ok(None);
    };
    if ctx.scope.is_some_and(|s| !s.contains(&row.community)) {
        return Ok(None);
    }
    let dicts = ctx.store.dictionaries();
    let names = Names { dicts: &dicts };
    Ok(names.sightings(&[row]).pop().map(|s| (s, attrs)))
}
