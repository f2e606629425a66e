//! The table itself: every route of the API, grouped by feature.

use hyper::Method;
use serde_json::json;

use super::Access::{Key, Public};
use super::Check::{Ignore, Refuse};
use super::{Check, Doc, Routes};
use crate::auth::Role::{Admin, Ingest, Investigate};
use crate::params::{p, path_p, Param};
use crate::{admin, catalog, feed, ingest, keys, queries, subscriptions, watchlists};

const FROM: Param = p(
    "from",
    true,
    "2021-09-01T00:00:00+08:00",
    "Start, inclusive: RFC 3339 or epoch ms.",
);
const TO: Param = p(
    "to",
    true,
    "2021-09-03T00:00:00+08:00",
    "End, exclusive: RFC 3339 or epoch ms.",
);
const KIND: Param = p(
    "kind",
    true,
    "vehicle",
    "vehicle, face, access, person or nonmotor.",
);
const SUBJECT: Param = p(
    "subject",
    true,
    "苏E12345",
    "Plate, face feature id or card id.",
);
const COMMUNITY: Param = p("community", true, "3205080001", "Community code.");
const ONLY_KIND: Param = p("kind", false, "vehicle", "Only this kind.");
const MOST_SUBJECTS: Param = p("limit", false, "100", "Most subjects (1000).");
const COMMUNITIES: Param = p("community", false, "3205080001", "Only these communities.");
const ID: Param = path_p("id", "0000000000000000", "");

/// A static parameter list (evaluated at compile time).
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        const { &[$($p),*] as &[Param] }
    };
}

const fn doc(summary: &'static str, params: &'static [Param]) -> Doc {
    Doc {
        summary,
        params,
        example: None,
        not_found: None,
    }
}

const fn with_body(
    summary: &'static str,
    params: &'static [Param],
    example: fn() -> serde_json::Value,
) -> Doc {
    Doc {
        summary,
        params,
        example: Some(example),
        not_found: None,
    }
}

const fn deleting(summary: &'static str, not_found: &'static str) -> Doc {
    Doc {
        summary,
        params: &[ID],
        example: None,
        not_found: Some(not_found),
    }
}

/// Every route, by feature.
pub(super) fn table() -> Routes {
    let mut r = Routes::new();
    console(&mut r);
    service(&mut r);
    keys(&mut r);
    whoami(&mut r);
    catalog(&mut r);
    ingest(&mut r);
    subject_queries(&mut r);
    community_queries(&mut r);
    images(&mut r);
    feed(&mut r);
    gat1400(&mut r);
    r
}

/// The investigator console: its page and files, embedded in the binary (`console.rs`).
fn console(r: &mut Routes) {
    r.console("/", crate::console::page);
    r.console("/console/{file}", crate::console::file);
}

/// Service: health, metrics, this API's description, audit, administration.
fn service(r: &mut Routes) {
    r.get(
        "/health",
        Public,
        Ignore,
        doc(
            "Liveness and store size; 503 `failed` after a disk failure until restarted.",
            &[],
        ),
        admin::health,
    );
    r.get(
        "/metrics",
        Key(Admin),
        Ignore,
        doc("Prometheus metrics (text).", &[]),
        admin::metrics,
    );
    r.get(
        "/v1/openapi.json",
        Public,
        Ignore,
        doc("This document.", &[]),
        admin::openapi,
    );
    r.get(
        "/v1/audit",
        Key(Admin),
        Refuse,
        doc(
            "The audit log of investigative queries (admin).",
            params![
                p(
                    "after",
                    false,
                    "0",
                    "Entries after this sequence number (0)."
                ),
                p("limit", false, "100", "Most entries, ≤ 10,000 (1000)."),
                p("key", false, "3f9a01c2", "Only this key's entries."),
                p(
                    "endpoint",
                    false,
                    "/v1/search",
                    "Only entries whose endpoint contains this."
                ),
            ],
        ),
        admin::audit,
    );
    r.get(
        "/v1/admin/stats",
        Key(Admin),
        Ignore,
        doc(
            "Store statistics: events, shards, segments, bytes, subjects (admin).",
            &[],
        ),
        admin::stats,
    );
    r.get(
        "/v1/admin/retention",
        Key(Admin),
        Ignore,
        doc(
            "The retention policy in days (null: keep everything) (admin).",
            &[],
        ),
        admin::retention,
    );
    r.send(
        Method::PUT,
        "/v1/admin/retention",
        Admin,
        with_body(
            "Change the retention policy: {\"days\": N} or {\"days\": null} (keep everything). \
         Durable; shards past the new horizon are dropped at once and listed (admin). On a \
         cluster the policy is kept in PostgreSQL and the indexers drop at their next commit \
         (`dropped_shards`: null).",
            &[],
            || json!({"days": null}),
        ),
        admin::retention,
    );
}

/// API keys, managed live: a city-wide power (an admin key without a community scope;
/// a scoped admin is answered 403). `sightline keys` makes the first one.
fn keys(r: &mut Routes) {
    r.get(
        "/v1/keys",
        Key(Admin),
        Refuse,
        doc(
            "Every API key, active and revoked: id, name, role, communities, created, revoked; never a token (unscoped admin).",
            &[],
        ),
        keys::list,
    );
    r.send(
        Method::POST,
        "/v1/keys",
        Admin,
        with_body(
            "Create a key: {\"name\", \"role\": ingest|investigate|admin, \"communities\": [codes] (omit for all)}; answered 201 with its `token`, shown this once. In force at once; audited (unscoped admin).",
            &[],
            || json!({"name": "detective 7", "role": "investigate", "communities": ["3205080001"]}),
        ),
        keys::create,
    );
    r.send(
        Method::DELETE,
        "/v1/keys/{id}",
        Admin,
        Doc {
            summary: "Revoke a key: refused from the next request on; the record is kept. Revoking the last key closes the server (401 for everyone), never opens it; audited (unscoped admin).",
            params: params![path_p("id", "3f9a01c2", "Key id (the part after `sl_` of its token).")],
            example: None,
            not_found: Some("No such key."),
        },
        keys::revoke,
    );
}

/// Who the caller is (the console shows it and offers what the role allows).
fn whoami(r: &mut Routes) {
    r.get(
        "/v1/whoami",
        Key(Investigate),
        Check::RefuseAudited,
        doc(
            "The key making the request: id, name, role, communities (null: every community), and whether the server is open (`--no-auth`, never keyed); audited.",
            &[],
        ),
        keys::whoami,
    );
}

/// The catalog: communities and devices.
fn catalog(r: &mut Routes) {
    r.get(
        "/v1/communities",
        Key(Investigate),
        Refuse,
        doc("Registered communities (those the key may see).", &[]),
        catalog::communities,
    );
    r.get(
        "/v1/communities/{code}",
        Key(Investigate),
        Refuse,
        doc(
            "One registered community (404 `no_such_community` when it is not, or not the key's).",
            params![path_p("code", "3205080001", "")],
        ),
        catalog::community,
    );
    r.send(
        Method::PUT,
        "/v1/communities/{code}",
        Admin,
        with_body(
            "Register (201) or replace (200) a community (admin).",
            params![path_p("code", "3205080001", "")],
            || json!({"name": "Pingjiang Road North", "district": "Gusu"}),
        ),
        catalog::put_community,
    );
    r.get(
        "/v1/devices",
        Key(Investigate),
        Refuse,
        doc(
            "Registered devices (those the key may see).",
            params![p(
                "community",
                false,
                "3205080001",
                "Only this community's devices."
            ),],
        ),
        catalog::devices,
    );
    r.get(
        "/v1/devices/{code}",
        Key(Investigate),
        Refuse,
        doc(
            "One registered device (404 `no_such_device` when it is not, or of another community than the key's).",
            params![path_p("code", "32050801011210000001", "")],
        ),
        catalog::device,
    );
    r.send(
        Method::PUT,
        "/v1/devices/{code}",
        Admin,
        with_body(
            "Register (201) or replace (200) a device of a registered community (admin).",
            params![path_p("code", "32050801011210000001", "")],
            || {
                json!({"community": "3205080001", "device_kind": "checkpoint_camera",
                  "direction": "in", "name": "North gate, inbound lane"})
            },
        ),
        catalog::put_device,
    );
}

/// Ingest.
fn ingest(r: &mut Routes) {
    r.send(
        Method::POST,
        "/v1/events",
        Ingest,
        with_body(
            "Ingest events (NDJSON or a JSON array); answered once they are durable.",
            &[],
            || {
                json!([{"ts": "2021-09-01T08:00:00+08:00", "community": "3205080001",
                   "device": "32050801011210000001", "kind": "vehicle", "subject": "苏E12345",
                   "direction": "in", "attrs": {"plate_color": "blue"}}])
            },
        ),
        ingest::post_events,
    );
}

/// Subject queries (audited, in the key's communities, like every query): an event,
/// a trajectory, companions, collision, search.
fn subject_queries(r: &mut Routes) {
    r.get(
        "/v1/events/{id}",
        Key(Investigate),
        Check::RefuseAudited,
        doc(
            "One event by the id ingest returned (404 outside the key's communities).",
            params![path_p("id", "1", "Event id."),],
        ),
        queries::event,
    );
    r.get(
        "/v1/trajectory",
        Key(Investigate),
        Check::RefuseAudited,
        doc(
            "A subject's sightings in time order, with stays, paged.",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p(
                    "community",
                    false,
                    "3205080001",
                    "Only these communities (repeat or comma-separate)."
                ),
                p(
                    "cursor",
                    false,
                    "1630454400000.32050801011210000001.0",
                    "Go on after this event: the previous page's `next_cursor`."
                ),
                p("limit", false, "100", "Events per page, 1–10,000 (1000)."),
                p(
                    "fields",
                    false,
                    "ts,device",
                    "Only these members of each event (repeat or comma-separate): id, ts, community, device, kind, subject, direction, attrs, images, object (all)."
                ),
            ],
        ),
        queries::trajectory::get,
    );
    r.query(
        "/v1/cooccurrence",
        doc(
            "Subjects seen near a target's sightings (同行/伴随, 人车关联).",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p(
                    "community",
                    false,
                    "3205080001",
                    "Only the target's sightings in these communities."
                ),
                p(
                    "window",
                    false,
                    "60s",
                    "Half-width of the time window, ≤ 1h (60s)."
                ),
                p("min_count", false, "1", "Least distinct passes (1)."),
                p("scope", false, "device", "device or community (device)."),
                p(
                    "candidate_kind",
                    false,
                    "face",
                    "Only candidates of this kind."
                ),
                p(
                    "dedup_gap",
                    false,
                    "10s",
                    "Merge the target's reads at one device this close."
                ),
                p("limit", false, "100", "Most candidates, ≤ 10,000 (100)."),
            ],
        ),
        queries::cooccurrence,
    );
    r.add(Some(Method::POST), "/v1/collision", Key(Investigate), Ignore, Some(with_body(
        "Subjects present under several conditions (碰撞).", &[],
        || json!({"kind": "vehicle", "min_conditions": 1, "conditions": [
            {"communities": ["3205080001"], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"}]}))),
        queries::collision);
    r.query(
        "/v1/search",
        doc(
            "Subjects by exact, prefix, wildcard or fuzzy pattern.",
            params![
                p(
                    "q",
                    true,
                    "苏E1234S",
                    "The pattern; ? and * in wildcard mode."
                ),
                p(
                    "mode",
                    false,
                    "fuzzy",
                    "exact, prefix, wildcard or fuzzy (exact)."
                ),
                p("distance", false, "1", "Fuzzy edit distance, 1 or 2 (1)."),
                ONLY_KIND,
                p("limit", false, "10", "Most subjects, ≤ 1000 (100)."),
            ],
        ),
        queries::search,
    );
}

/// Pictures of events.
fn images(r: &mut Routes) {
    r.get(
        "/v1/images/{id}",
        Key(Investigate),
        Refuse,
        doc(
            "A picture's bytes (JPEG, PNG or BMP, by its Content-Type), as an event's `images` list it; 404 outside the key's communities; audited.",
            params![path_p("id", "3332303530383030303100.18871.8", "Picture id.")],
        ),
        crate::images::get,
    );
    r.get(
        "/v1/objects/{id}",
        Key(Investigate),
        Refuse,
        doc(
            "A GA/T 1400 object as it was uploaded, its pictures by reference (`StoragePath`: `/v1/images/{id}`), as an event's `object` names it; 404 outside the key's communities; audited.",
            params![path_p("id", "3332303530383030303100.18871.8", "Object id.")],
        ),
        crate::images::object,
    );
}

/// Community queries: who comes often, at night, for the first time; counts.
fn community_queries(r: &mut Routes) {
    r.query(
        "/v1/frequency",
        doc(
            "Subjects seen at a community often (频繁出入).",
            params![
                COMMUNITY,
                KIND,
                FROM,
                TO,
                p(
                    "min_count",
                    false,
                    "2",
                    "Least sightings (give this and/or min_days)."
                ),
                p("min_days", false, "1", "Least distinct days."),
                MOST_SUBJECTS,
            ],
        ),
        queries::patterns::frequency,
    );
    r.query(
        "/v1/nocturnal",
        doc(
            "Subjects seen mostly at night (昼伏夜出).",
            params![
                KIND,
                FROM,
                TO,
                COMMUNITIES,
                p("day_start_hour", false, "6", "Day starts (6)."),
                p("day_end_hour", false, "18", "Day ends (18)."),
                p("min_night", false, "1", "Least night sightings (5)."),
                p("max_day", false, "2", "Most day sightings (2)."),
                MOST_SUBJECTS,
            ],
        ),
        queries::patterns::nocturnal,
    );
    r.query(
        "/v1/first-seen",
        doc(
            "Subjects new to a community (首次出现).",
            params![
                COMMUNITY,
                KIND,
                FROM,
                TO,
                p(
                    "lookback",
                    false,
                    "30d",
                    "Days before `from` they must be absent (30d)."
                ),
                MOST_SUBJECTS,
            ],
        ),
        queries::patterns::first_seen,
    );
    r.query(
        "/v1/overnight",
        doc(
            "Where a subject spends its nights (落脚点).",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p("evening_hour", false, "19", "Evening starts (19)."),
                p("morning_hour", false, "10", "Morning ends next day (10)."),
            ],
        ),
        queries::patterns::overnight,
    );
    r.query(
        "/v1/counts",
        doc(
            "Events per community, device or kind per hour or day.",
            params![
                FROM,
                TO,
                COMMUNITIES,
                ONLY_KIND,
                p(
                    "by",
                    false,
                    "community",
                    "community, device or kind (community)."
                ),
                p("per", false, "day", "hour or day (day)."),
            ],
        ),
        queries::patterns::counts,
    );
}

/// The change feed, subscriptions, watchlists and alerts.
fn feed(r: &mut Routes) {
    r.get("/v1/feed", Key(Investigate), Refuse, doc("Events in commit order after a cursor (an event id): a page, long-polled with `wait`, or Server-Sent Events with `Accept: text/event-stream` (resumes from `Last-Event-ID`). On a cluster's query node the cursor (`after`, `next_after`, an event's SSE `id`) is a string, a position per partition (`partition:seq.partition:seq…`, `0` the start), each partition in its own commit order, and the page lists in `unavailable` the partitions that did not answer (their positions kept).", params![
        p("after", false, "0", "Cursor: the last event id processed (0); on a cluster, the previous page's `next_after`."),
        p("limit", false, "100", "Events per page (1000)."),
        p("wait", false, "0s", "Wait up to this long (≤ 60 s) when nothing is new (0)."),
        ONLY_KIND,
        p("community", false, "3205080001", "Only these communities."),
    ]), feed::get);
    r.get(
        "/v1/subscriptions",
        Key(Admin),
        Refuse,
        doc(
            "Subscriptions with their delivery status: cursor, lag, failures, last error (admin).",
            &[],
        ),
        subscriptions::handlers::list,
    );
    r.send(Method::POST, "/v1/subscriptions", Admin, with_body(
        "Push matching events to a downstream endpoint, at least once, in order, from a durable cursor (admin); answered 201.", &[],
        || json!({"url": "http://127.0.0.1:9/hook", "kinds": ["vehicle"], "communities": ["3205080001"],
                  "format": "sightline", "batch": 500, "from": 0})), subscriptions::handlers::create);
    r.send(
        Method::DELETE,
        "/v1/subscriptions/{id}",
        Admin,
        deleting(
            "Stop and forget a subscription (admin).",
            "No such subscription.",
        ),
        subscriptions::handlers::delete,
    );
    r.get(
        "/v1/upstreams",
        Key(Admin),
        Refuse,
        doc(
            "Upstream 视图库s this server registers with and uploads to, with their status: registration, cursor, lag, failures, last error (admin; never the password).",
            &[],
        ),
        subscriptions::upstream_handlers::list,
    );
    r.get(
        "/v1/upstreams/{id}",
        Key(Admin),
        Refuse,
        doc("One upstream with its status (admin).", &[ID]),
        subscriptions::upstream_handlers::get,
    );
    r.send(Method::POST, "/v1/upstreams", Admin, with_body(
        "Register with an upstream 视图库 (GA/T 1400 digest, keepalives) and upload matching events to it as MotorVehicles/Faces/Persons/NonMotorVehicles, at least once, in order, from a durable cursor (admin); answered 201.", &[],
        || json!({"url": "http://10.0.0.1:8080", "server_id": "32050000005030000009", "device_id": "32050000005030000001",
                  "password": "secret", "kinds": ["vehicle", "face"], "communities": ["3205080001"],
                  "image_data": "reference", "keepalive_s": 30, "batch": 500, "from": 0})), subscriptions::upstream_handlers::create);
    r.send(
        Method::DELETE,
        "/v1/upstreams/{id}",
        Admin,
        deleting(
            "Stop registering with and uploading to an upstream, unregister there (POST /VIID/System/UnRegister), and forget it (admin).",
            "No such upstream.",
        ),
        subscriptions::upstream_handlers::delete,
    );
    r.get(
        "/v1/remote-subscriptions",
        Key(Admin),
        Refuse,
        doc(
            "GA/T 1400 subscriptions this server placed at other 视图库s, with their status (admin, city-wide; never the password).",
            &[],
        ),
        subscriptions::remote_handlers::list,
    );
    r.send(Method::POST, "/v1/remote-subscriptions", Admin, with_body(
        "Subscribe at another 视图库 (POST /VIID/Subscribes there, digest-authenticated, then PUT again every 5 min; BeginTime now and EndTime 20991231235959 unless given); its notifications come back to /VIID/SubscribeNotifications here (admin, city-wide); answered 201.", &[],
        || json!({"url": "http://10.0.0.2:8080", "password": "secret", "device_id": "32050000005030000001",
                  "kinds": ["vehicle", "face"], "resource_uri": "32050000005030000002",
                  "title": "city vehicles", "image_data": "base64"})), subscriptions::remote_handlers::create);
    r.send(
        Method::DELETE,
        "/v1/remote-subscriptions/{id}",
        Admin,
        deleting(
            "Cancel a remote subscription there (PUT /VIID/Subscribes/<SubscribeID> with the cancel fields, else DELETE /VIID/Subscribes?IDList=…) and forget it; a cancel not taken is retried until taken (admin, city-wide).",
            "No such remote subscription.",
        ),
        subscriptions::remote_handlers::delete,
    );
    r.get(
        "/v1/watchlists",
        Key(Investigate),
        Refuse,
        doc(
            "Watchlists (those of the key's communities for a scoped key).",
            &[],
        ),
        watchlists::handlers::list,
    );
    r.send(Method::POST, "/v1/watchlists", Investigate, with_body(
        "Watch subjects (exact, wildcard pattern, or OCR-fuzzy plate) with a reason and expiry; every matching event raises an alert at ingest; answered 201.", &[],
        || json!({"name": "case 7", "reason": "stolen vehicle", "expires": "2099-01-01T00:00:00+08:00",
                  "entries": [{"kind": "vehicle", "subject": "苏E12345"},
                              {"kind": "vehicle", "pattern": "苏E9*"},
                              {"kind": "vehicle", "fuzzy": "苏E7777B", "distance": 0.5}]})), watchlists::handlers::create);
    r.send(
        Method::DELETE,
        "/v1/watchlists/{id}",
        Investigate,
        deleting(
            "Delete a watchlist: it raises no more alerts.",
            "No such watchlist.",
        ),
        watchlists::handlers::delete,
    );
    r.get(
        "/v1/alerts",
        Key(Investigate),
        Refuse,
        doc(
            "Watchlist alerts after a cursor (an alert id), in order; long-polled with `wait`. With `latest`, the newest ones instead (a console opening), and `next_after` past every alert.",
            params![
                p("after", false, "0", "The last alert id processed (0)."),
                p("limit", false, "100", "Alerts per page (1000)."),
                p(
                    "wait",
                    false,
                    "0s",
                    "Wait up to this long (≤ 60 s) when nothing is new (0)."
                ),
                p(
                    "latest",
                    false,
                    "50",
                    "The newest this many (1 to 1000) the key may read, oldest first, instead of those after `after` (not with an `after` or a `wait` other than 0)."
                ),
            ],
        ),
        watchlists::handlers::alerts,
    );
}

/// GA/T 1400 (视图库): cameras and platforms, HTTP Digest (server/API.md).
fn gat1400(r: &mut Routes) {
    use crate::gat1400::handlers as viid;
    r.viid(Method::POST, "/VIID/System/Register", viid::register);
    r.viid(Method::POST, "/VIID/System/UnRegister", viid::unregister);
    r.viid(Method::POST, "/VIID/System/Keepalive", viid::keepalive);
    r.viid(Method::GET, "/VIID/System/Time", viid::time);
    r.viid(Method::POST, "/VIID/MotorVehicles", viid::upload);
    r.viid(Method::POST, "/VIID/Faces", viid::upload);
    r.viid(Method::POST, "/VIID/Persons", viid::upload);
    r.viid(Method::POST, "/VIID/NonMotorVehicles", viid::upload);
    r.viid(Method::POST, "/VIID/Images", viid::upload);
    // GA/T 1400.4 queries: by conditions, and one object by its id.
    r.viid(Method::GET, "/VIID/MotorVehicles", viid::query_objects);
    r.viid(Method::GET, "/VIID/Faces", viid::query_objects);
    r.viid(Method::GET, "/VIID/Persons", viid::query_objects);
    r.viid(Method::GET, "/VIID/NonMotorVehicles", viid::query_objects);
    r.viid(Method::GET, "/VIID/MotorVehicles/{id}", viid::read_object);
    r.viid(Method::GET, "/VIID/Faces/{id}", viid::read_object);
    r.viid(Method::GET, "/VIID/Persons/{id}", viid::read_object);
    r.viid(
        Method::GET,
        "/VIID/NonMotorVehicles/{id}",
        viid::read_object,
    );
    r.viid(Method::GET, "/VIID/APEs", viid::apes);
    r.viid(Method::GET, "/VIID/Tollgates", viid::tollgates);
    r.viid(Method::POST, "/VIID/Dispositions", viid::dispositions);
    r.viid(Method::PUT, "/VIID/Dispositions", viid::dispositions);
    r.viid(
        Method::DELETE,
        "/VIID/Dispositions",
        viid::revoke_dispositions,
    );
    r.viid(
        Method::PUT,
        "/VIID/Dispositions/{id}",
        viid::revoke_dispositions,
    );
    r.viid(
        Method::DELETE,
        "/VIID/Dispositions/{id}",
        viid::revoke_dispositions,
    );
    r.viid(Method::POST, "/VIID/Subscribes", viid::subscribes);
    r.viid(Method::PUT, "/VIID/Subscribes", viid::subscribes);
    r.viid(Method::GET, "/VIID/Subscribes", viid::list_subscribes);
    r.viid(Method::DELETE, "/VIID/Subscribes", viid::cancel_subscribes);
    r.viid(
        Method::PUT,
        "/VIID/Subscribes/{id}",
        viid::cancel_subscribes,
    );
    r.viid(
        Method::DELETE,
        "/VIID/Subscribes/{id}",
        viid::cancel_subscribes,
    );
    r.viid(
        Method::POST,
        "/VIID/SubscribeNotifications",
        viid::subscribe_notifications,
    );
    r.viid_fallback("/VIID/{resource}", viid::no_such_resource);
}
