//! `GET /v1/openapi.json`: an OpenAPI 3 description with an example for every
//! parameter and body, so the document and the server cannot drift apart unnoticed:
//! `server/tests/http.rs` calls every documented route with its examples.

use serde_json::{json, Value};

struct Param {
    name: &'static str,
    /// In the path (`{name}`) rather than the query string.
    in_path: bool,
    required: bool,
    example: &'static str,
    about: &'static str,
}

const fn p(
    name: &'static str,
    required: bool,
    example: &'static str,
    about: &'static str,
) -> Param {
    Param {
        name,
        in_path: false,
        required,
        example,
        about,
    }
}

/// A path parameter (always required).
const fn path_p(name: &'static str, example: &'static str, about: &'static str) -> Param {
    Param {
        in_path: true,
        ..p(name, true, example, about)
    }
}

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

struct Route {
    path: &'static str,
    summary: &'static str,
    params: &'static [Param],
}

const GETS: &[Route] = &[
    Route {
        path: "/v1/communities",
        summary: "Registered communities (those the key may see).",
        params: &[],
    },
    Route {
        path: "/v1/devices",
        summary: "Registered devices (those the key may see).",
        params: &[p(
            "community",
            false,
            "3205080001",
            "Only this community's devices.",
        )],
    },
    Route {
        path: "/v1/events/{id}",
        summary: "One event by the id ingest returned (404 outside the key's communities).",
        params: &[path_p("id", "1", "Event id.")],
    },
    Route {
        path: "/v1/feed",
        summary: "Events in commit order after a cursor (an event id): a page, long-polled with `wait`, or Server-Sent Events with `Accept: text/event-stream` (resumes from `Last-Event-ID`).",
        params: &[
            p("after", false, "0", "Cursor: the last event id processed (0)."),
            p("limit", false, "100", "Events per page (1000)."),
            p("wait", false, "0s", "Wait up to this long (≤ 60 s) when nothing is new (0)."),
            p("kind", false, "vehicle", "Only this kind."),
            p("community", false, "3205080001", "Only these communities."),
        ],
    },
    Route {
        path: "/v1/subscriptions",
        summary: "Subscriptions with their delivery status: cursor, lag, failures, last error (admin).",
        params: &[],
    },
    Route {
        path: "/v1/watchlists",
        summary: "Watchlists (those of the key's communities for a scoped key).",
        params: &[],
    },
    Route {
        path: "/v1/alerts",
        summary: "Watchlist alerts after a cursor (an alert id), in order; long-polled with `wait`.",
        params: &[
            p("after", false, "0", "The last alert id processed (0)."),
            p("limit", false, "100", "Alerts per page (1000)."),
            p("wait", false, "0s", "Wait up to this long (≤ 60 s) when nothing is new (0)."),
        ],
    },
    Route {
        path: "/v1/admin/retention",
        summary: "The retention policy in days (null: keep everything) (admin).",
        params: &[],
    },
    Route {
        path: "/v1/admin/stats",
        summary: "Store statistics: events, shards, segments, bytes, subjects (admin).",
        params: &[],
    },
    Route {
        path: "/health",
        summary: "Liveness and store size; 503 `failed` after a disk failure until restarted.",
        params: &[],
    },
    Route {
        path: "/metrics",
        summary: "Prometheus metrics (text).",
        params: &[],
    },
    Route {
        path: "/v1/openapi.json",
        summary: "This document.",
        params: &[],
    },
    Route {
        path: "/v1/audit",
        summary: "The audit log of investigative queries (admin).",
        params: &[
            p(
                "after",
                false,
                "0",
                "Entries after this sequence number (0).",
            ),
            p("limit", false, "100", "Most entries, ≤ 10,000 (1000)."),
        ],
    },
    Route {
        path: "/v1/trajectory",
        summary: "A subject's sightings in time order, with stays, paged.",
        params: &[
            KIND,
            SUBJECT,
            FROM,
            TO,
            p(
                "community",
                false,
                "3205080001",
                "Only these communities (repeat or comma-separate).",
            ),
            p("limit", false, "100", "Events per page, 1–10,000 (1000)."),
        ],
    },
    Route {
        path: "/v1/cooccurrence",
        summary: "Subjects seen near a target's sightings (同行/伴随, 人车关联).",
        params: &[
            KIND,
            SUBJECT,
            FROM,
            TO,
            p(
                "window",
                false,
                "60s",
                "Half-width of the time window, ≤ 1h (60s).",
            ),
            p("min_count", false, "1", "Least distinct passes (1)."),
            p("scope", false, "device", "device or community (device)."),
            p(
                "candidate_kind",
                false,
                "face",
                "Only candidates of this kind.",
            ),
            p(
                "dedup_gap",
                false,
                "10s",
                "Merge the target's reads at one device this close.",
            ),
            p("limit", false, "100", "Most candidates, ≤ 10,000 (100)."),
        ],
    },
    Route {
        path: "/v1/search",
        summary: "Subjects by exact, prefix, wildcard or fuzzy pattern.",
        params: &[
            p(
                "q",
                true,
                "苏E1234S",
                "The pattern; ? and * in wildcard mode.",
            ),
            p(
                "mode",
                false,
                "fuzzy",
                "exact, prefix, wildcard or fuzzy (exact).",
            ),
            p("distance", false, "1", "Fuzzy edit distance, 1 or 2 (1)."),
            p("kind", false, "vehicle", "Only this kind."),
            p("limit", false, "10", "Most subjects, ≤ 1000 (100)."),
        ],
    },
    Route {
        path: "/v1/frequency",
        summary: "Subjects seen at a community often (频繁出入).",
        params: &[
            COMMUNITY,
            KIND,
            FROM,
            TO,
            p(
                "min_count",
                false,
                "2",
                "Least sightings (give this and/or min_days).",
            ),
            p("min_days", false, "1", "Least distinct days."),
            p("limit", false, "100", "Most subjects (1000)."),
        ],
    },
    Route {
        path: "/v1/nocturnal",
        summary: "Subjects seen mostly at night (昼伏夜出).",
        params: &[
            KIND,
            FROM,
            TO,
            p("community", false, "3205080001", "Only these communities."),
            p("day_start_hour", false, "6", "Day starts (6)."),
            p("day_end_hour", false, "18", "Day ends (18)."),
            p("min_night", false, "1", "Least night sightings (5)."),
            p("max_day", false, "2", "Most day sightings (2)."),
            p("limit", false, "100", "Most subjects (1000)."),
        ],
    },
    Route {
        path: "/v1/first-seen",
        summary: "Subjects new to a community (首次出现).",
        params: &[
            COMMUNITY,
            KIND,
            FROM,
            TO,
            p(
                "lookback",
                false,
                "30d",
                "Days before `from` they must be absent (30d).",
            ),
            p("limit", false, "100", "Most subjects (1000)."),
        ],
    },
    Route {
        path: "/v1/overnight",
        summary: "Where a subject spends its nights (落脚点).",
        params: &[
            KIND,
            SUBJECT,
            FROM,
            TO,
            p("evening_hour", false, "19", "Evening starts (19)."),
            p("morning_hour", false, "10", "Morning ends next day (10)."),
        ],
    },
    Route {
        path: "/v1/counts",
        summary: "Events per community, device or kind per hour or day.",
        params: &[
            FROM,
            TO,
            p("community", false, "3205080001", "Only these communities."),
            p("kind", false, "vehicle", "Only this kind."),
            p(
                "by",
                false,
                "community",
                "community, device or kind (community).",
            ),
            p("per", false, "day", "hour or day (day)."),
        ],
    },
];

/// POST routes with an example body.
fn posts() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "/v1/events",
            "Ingest events (NDJSON or a JSON array); answered once they are durable.",
            json!([{"ts": "2021-09-01T08:00:00+08:00", "community": "3205080001",
                    "device": "32050801011210000001", "kind": "vehicle", "subject": "苏E12345",
                    "direction": "in", "attrs": {"plate_color": "blue"}}]),
        ),
        (
            "/v1/subscriptions",
            "Push matching events to a downstream endpoint, at least once, in order, from a durable cursor (admin); answered 201.",
            json!({"url": "http://127.0.0.1:9/hook", "kinds": ["vehicle"], "communities": ["3205080001"],
                   "format": "sightline", "batch": 500, "from": 0}),
        ),
        (
            "/v1/watchlists",
            "Watch subjects (exact, wildcard pattern, or OCR-fuzzy plate) with a reason and expiry; every matching event raises an alert at ingest; answered 201.",
            json!({"name": "case 7", "reason": "stolen vehicle", "expires": "2099-01-01T00:00:00+08:00",
                   "entries": [{"kind": "vehicle", "subject": "苏E12345"},
                               {"kind": "vehicle", "pattern": "苏E9*"},
                               {"kind": "vehicle", "fuzzy": "苏E7777B", "distance": 0.5}]}),
        ),
        (
            "/v1/collision",
            "Subjects present under several conditions (碰撞).",
            json!({"kind": "vehicle", "min_conditions": 1, "conditions": [
                {"communities": ["3205080001"], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"}]}),
        ),
    ]
}

/// Adds operation `method` of `path`, beside the path's other operations.
fn add(paths: &mut serde_json::Map<String, Value>, path: &str, method: &str, op: Value) {
    match paths.get_mut(path).and_then(Value::as_object_mut) {
        Some(ops) => {
            ops.insert(method.into(), op);
        }
        None => {
            paths.insert(path.to_string(), json!({ method: op }));
        }
    }
}

pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = serde_json::Map::new();
    for r in GETS {
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|p| {
                let at = if p.in_path { "path" } else { "query" };
                json!({"name": p.name, "in": at, "required": p.required,
                       "description": p.about, "schema": {"type": "string"}, "example": p.example})
            })
            .collect();
        let content = if r.path == "/metrics" {
            "text/plain"
        } else {
            "application/json"
        };
        paths.insert(
            r.path.to_string(),
            json!({"get": {"summary": r.summary, "parameters": params, "responses": {
                "200": {"description": "OK", "content": {content: {}}},
                "400": {"description": "A parameter is invalid; `field` names it.",
                        "content": {"application/json": {"schema": error}}}}}}),
        );
    }
    for (path, summary, example) in posts() {
        let op = json!({"summary": summary,
                "requestBody": {"required": true, "content": {
                    "application/json": {"example": example},
                    "application/x-ndjson": {}}},
                "responses": {
                    "200": {"description": "OK (201 Created for a subscription)", "content": {"application/json": {}}},
                    "400": {"description": "Malformed body or parameter.", "content": {"application/json": {"schema": error}}},
                    "413": {"description": "Body or batch too large.", "content": {"application/json": {"schema": error}}},
                    "422": {"description": "Every record refused.", "content": {"application/json": {"schema": error}}},
                    "429": {"description": "Saturated; retry after Retry-After seconds.", "content": {"application/json": {"schema": error}}}}});
        add(&mut paths, path, "post", op);
    }
    add(
        &mut paths,
        "/v1/watchlists/{id}",
        "delete",
        json!({"summary": "Delete a watchlist: it raises no more alerts.",
            "parameters": [{"name": "id", "in": "path", "required": true,
                            "schema": {"type": "string"}, "example": "0000000000000000"}],
            "responses": {
                "200": {"description": "Deleted", "content": {"application/json": {}}},
                "404": {"description": "No such watchlist.", "content": {"application/json": {"schema": error}}}}}),
    );
    add(
        &mut paths,
        "/v1/subscriptions/{id}",
        "delete",
        json!({"summary": "Stop and forget a subscription (admin).",
            "parameters": [{"name": "id", "in": "path", "required": true,
                            "schema": {"type": "string"}, "example": "0000000000000000"}],
            "responses": {
                "200": {"description": "Deleted", "content": {"application/json": {}}},
                "404": {"description": "No such subscription.", "content": {"application/json": {"schema": error}}}}}),
    );
    for (path, code, summary, example) in [
        (
            "/v1/communities/{code}",
            Some("3205080001"),
            "Register or update a community (admin).",
            json!({"name": "Pingjiang Road North", "district": "Gusu"}),
        ),
        (
            "/v1/devices/{code}",
            Some("32050801011210000001"),
            "Register or update a device of a registered community (admin).",
            json!({"community": "3205080001", "device_kind": "checkpoint_camera",
                   "direction": "in", "name": "North gate, inbound lane"}),
        ),
        (
            "/v1/admin/retention",
            None,
            "Change the retention policy: {\"days\": N} or {\"days\": null} (keep everything). \
             Durable; shards past the new horizon are dropped at once and listed (admin).",
            json!({"days": null}),
        ),
    ] {
        let params: Vec<Value> = code
            .iter()
            .map(|c| {
                json!({"name": "code", "in": "path", "required": true,
                       "schema": {"type": "string"}, "example": c})
            })
            .collect();
        let op = json!({"summary": summary,
                "parameters": params,
                "requestBody": {"required": true, "content": {"application/json": {"example": example}}},
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {}}},
                    "400": {"description": "A field is invalid; `field` names it.",
                            "content": {"application/json": {"schema": error}}}}});
        match paths.get_mut(path).and_then(Value::as_object_mut) {
            Some(ops) => {
                ops.insert("put".into(), op);
            }
            None => {
                paths.insert(path.to_string(), json!({ "put": op }));
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Sightline", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event store and query server for community gate sensing. Semantics: query/SEMANTICS.md."},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "field": {"type": "string"}, "line": {"type": "integer"}}}}}}}
    })
}
