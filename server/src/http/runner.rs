//! Running store work without holding up other connections: [`run`] puts a closure on
//! tokio's blocking pool within the query slots and the time limit; [`audited`] runs an
//! investigative query in the caller's scope on the connection's own thread, after that
//! thread's other tasks were handed on ([`run_here`]), and writes its audit entry,
//! answered or not.

use std::sync::Arc;

use sightline_query::QueryContext;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::{Answer, Body, Call};
use crate::params::Params;
use crate::App;

/// Runs `f` on the blocking pool (store calls lock, fsync and compute), within the
/// query concurrency limit and time limit. Past its time the request is answered 503;
/// its slot stays taken until it really ends, so overload cannot pile up behind it.
pub(crate) async fn run<F, T>(app: Arc<App>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&App) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let slot = app
        .query_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    let timeout = app.config.query_timeout;
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&app)
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(ApiError::QueryTimeout(Some(timeout))),
        Ok(joined) => {
            joined.map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
        }
    }
}

/// [`run`] for a query: on the connection's own thread, which hands its other tasks
/// to another thread first (`block_in_place`), so the answer is written without two
/// hand-offs between threads (~0.05–0.1 ms of a heavy page on two cores); on the
/// blocking pool under a runtime of one thread (tests). Its time limit is the query
/// context's deadline, checked between units of work (once a query's segments are
/// searched, every 65,536 rows merged, …), not a timer's: an answer past it comes when
/// the unit under way ends (a page's writing, at most `max_result_rows` events, is not
/// checked; a read the disk does not complete is waited for). A panic is a 500, as
/// [`run`]'s (a joined task's failure) is, so [`audited`] still records it.
pub(crate) async fn run_here<F, T>(app: Arc<App>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&App) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() != RuntimeFlavor::MultiThread {
        return run(app, f).await;
    }
    let _slot = app
        .query_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("the query service"))?;
    in_place(|| f(&app))
}

/// `f` on this thread of a multi-thread runtime, its other tasks handed on first; a
/// panic logged and answered 500 (what it said is not sent).
fn in_place<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    let ran =
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    ran.unwrap_or_else(|payload| {
        let why = crate::routes::panic_message(&*payload);
        tracing::error!(panic = why, "a query panicked");
        Err(ApiError::internal(crate::routes::PANICKED))
    })
}

/// What an investigative query is audited as: who, which endpoint, with what.
pub(crate) struct AuditLine {
    pub key_id: String,
    pub endpoint: String,
    /// The query string or body, cut to [`AUDIT_PARAMS_BYTES`].
    pub params: String,
    /// The caller's "audited" mark, set when the entry is written.
    audited: Arc<std::sync::atomic::AtomicBool>,
}

/// The longest parameter text an audit entry keeps.
pub(crate) const AUDIT_PARAMS_BYTES: usize = 4096;

impl AuditLine {
    pub fn new(caller: &Caller, endpoint: &str, mut params: String) -> AuditLine {
        // Cut on a character boundary: user text is never cut inside a character.
        let mut cut = AUDIT_PARAMS_BYTES.min(params.len());
        while !params.is_char_boundary(cut) {
            cut -= 1;
        }
        params.truncate(cut);
        AuditLine {
            key_id: caller.key_id.clone(),
            endpoint: endpoint.to_string(),
            params,
            audited: caller.audited.clone(),
        }
    }

    /// Appends the entry: how many results (when answered) and the status. A log that
    /// cannot be written (a full disk …) is 503 `audit_unavailable`: the caller does not
    /// get what it asked for unaudited.
    pub fn record(&self, app: &App, results: Option<usize>, status: u16) -> Result<(), ApiError> {
        self.record_in(&app.audit, results, status)
    }

    /// [`AuditLine::record`] into `log` (a cluster query node's).
    pub fn record_in(
        &self,
        log: &crate::audit::AuditLog,
        results: Option<usize>,
        status: u16,
    ) -> Result<(), ApiError> {
        log.record(
            crate::now_ms(),
            &self.key_id,
            &self.endpoint,
            &self.params,
            results,
            status,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            match e.is_io() {
                true => ApiError::AuditUnavailable(e.to_string()),
                false => ApiError::internal(format!("cannot write the audit log: {e}")),
            }
        })?;
        self.audited
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Runs an investigative query in the caller's scope and appends it to the audit log,
/// answered or not. `params` is what the entry records (the query string or body).
pub(crate) async fn audited<F>(
    app: Arc<App>,
    caller: Caller,
    endpoint: &str,
    params: String,
    ndjson: bool,
    f: F,
) -> Result<Answer, ApiError>
where
    F: FnOnce(&App, &QueryContext<'_>) -> Result<(Body, usize), ApiError> + Send + 'static,
{
    let line = AuditLine::new(&caller, endpoint, params);
    let answer = run_here(app.clone(), move |app| {
        let scope = scope_ids(app, &caller);
        let ctx = query_ctx(app, scope.as_deref());
        f(app, &ctx).map(|(b, n)| match ndjson {
            true => (b.into_lines(), n),
            false => (b.into_text(), n),
        })
    })
    .await;
    let (status, results) = match &answer {
        Ok((_, n)) => (200, Some(*n)),
        Err(e) => (e.status().as_u16(), None),
    };
    line.record(&app, results, status)?;
    answer.map(|(b, _)| (hyper::StatusCode::OK, b))
}

/// [`audited`] for a GET: the call's query string is what the entry records.
pub(crate) async fn audited_get<F>(c: Call, f: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&App, &QueryContext<'_>, &Params) -> Result<(Body, usize), ApiError> + Send + 'static,
{
    let Call {
        app,
        caller,
        params,
        path,
        query,
        ndjson,
        ..
    } = c;
    let asked = params.list("community").unwrap_or_default();
    let refused = caller.check_communities("community", &asked);
    audited(app, caller, &path, query, ndjson, move |app, ctx| {
        refused?;
        f(app, ctx, &params)
    })
    .await
}

/// A query context over the app's store, limited to `scope` when given, that stops
/// at the query time limit from now.
pub(crate) fn query_ctx<'a>(app: &'a App, scope: Option<&'a [u32]>) -> QueryContext<'a> {
    let ctx = QueryContext::new(&app.store, &app.index)
        .with_deadline(std::time::Instant::now() + app.config.query_timeout);
    match scope {
        Some(ids) => ctx.scoped(ids),
        None => ctx,
    }
}

/// The caller's community scope as sorted dictionary ids (`None`: everything).
pub(crate) fn scope_ids(app: &App, caller: &Caller) -> Option<Vec<u32>> {
    caller.communities.as_ref().map(|codes| {
        let d = app.store.dictionaries();
        let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
        ids.sort_unstable();
        ids
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query's panic on the connection's thread is a 500 that does not say what the
    /// panic said; the thread goes on serving (its runtime keeps working).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_panicking_in_place_is_a_500_and_the_runtime_goes_on() {
        let failed = in_place(|| -> Result<u8, ApiError> { panic!("row 7 of a secret") });
        let e = failed.unwrap_err();
        assert_eq!(e.status(), hyper::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(in_place(|| Ok(7)).unwrap(), 7);
        assert_eq!(tokio::spawn(async { 8 }).await.unwrap(), 8);
    }
}
