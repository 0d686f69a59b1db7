//! The served OpenAPI document matches the router.
//!
//! `docs/openapi.json` is hand-written, so these tests guard it both ways: every route the router
//! source declares is documented, and every documented operation is routed on a real server
//! (requested without credentials: never `404 route_not_found` or `405`, and `401` exactly when the
//! document declares a security requirement).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::TestServer;

/// Routes that take no credentials. Everything else under `/api/v1/` takes a line token and
/// everything else under `/api/` an ID token.
const PUBLIC: [&str; 7] = [
    "/healthz",
    "/metrics",
    "/api/openapi.json",
    "/api/auth/login",
    "/api/auth/refresh",
    "/api/auth/accept-invitation",
    "/api/signup/organization",
];

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn expected_security(path: &str) -> Value {
    if PUBLIC.contains(&path) || path.starts_with("/hooks/") || path.starts_with("/media/") {
        serde_json::json!([])
    } else if path.starts_with("/api/v1/") {
        serde_json::json!([{ "lineToken": [] }])
    } else {
        serde_json::json!([{ "idToken": [] }])
    }
}

async fn served_document(t: &TestServer) -> Value {
    let res = t.http.get(t.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let text = res.text().await.unwrap();
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert_eq!(text, on_disk, "the server serves docs/openapi.json as committed");
    serde_json::from_str(&text).expect("the document is JSON")
}

/// Follows a local `$ref` (`#/components/...`) until a non-reference value.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(pointer) = value.get("$ref").and_then(Value::as_str) else { return value };
        let pointer = pointer.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {pointer}"));
        value = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref #{pointer}"));
    }
    panic!("$ref chain too long")
}

/// Every `$ref` anywhere in the document points at something.
fn assert_refs_resolve(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {r}"));
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
            }
            map.values().for_each(|v| assert_refs_resolve(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_refs_resolve(doc, v)),
        _ => {}
    }
}

/// `(path, METHOD) -> operation` for every operation of the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                ops.insert((path.clone(), method.to_ascii_uppercase()), op.clone());
            }
        }
    }
    ops
}

/// `{anything}` -> `{}`, so `{line_id}` (axum) and `{lineId}` (OpenAPI) compare equal.
fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_is_complete() {
    let t = TestServer::start().await;
    let doc = served_document(&t).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", doc["openapi"]);
    assert_refs_resolve(&doc, &doc);
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert_eq!(schemes["idToken"]["scheme"], "bearer");
    assert_eq!(schemes["lineToken"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "the error envelope");

    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{} operations", ops.len());
    let mut ids = BTreeSet::new();
    for ((path, method), op) in &ops {
        let id = op["operationId"].as_str().filter(|s| !s.is_empty());
        let id = id.unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert_eq!(op["security"], expected_security(path), "{method} {path}: security");

        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no 2xx response");
        let error_statuses: Vec<&String> = responses
            .iter()
            .filter(|(status, r)| {
                status.starts_with('4')
                    && resolve(&doc, r)["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
            })
            .map(|(status, _)| status)
            .collect();
        // An operation that takes nothing (no parameters, body or credentials) cannot be refused.
        let takes_input = op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty())
            || op.get("requestBody").is_some()
            || op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(
            !error_statuses.is_empty(),
            takes_input,
            "{method} {path}: an operation documents a 4xx Error response exactly when it takes input"
        );
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            assert!(responses.contains_key("401"), "{method} {path}: secured but no 401");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("400"), "{method} {path}: takes a body but documents no 400");
        }
        let params: BTreeSet<String> = op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        let in_template: BTreeSet<String> =
            path.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(name, _)| name.to_owned())).collect();
        assert_eq!(params, in_template, "{method} {path}: path parameters");
    }
}

/// A value matching a path parameter's schema: the id prefix of its pattern (`^line_[...]`) and
/// a well-formed body.
fn example_value(doc: &Value, param: &Value) -> String {
    let schema = resolve(doc, &param["schema"]);
    let pattern = schema["pattern"].as_str().unwrap_or("");
    match pattern.strip_prefix('^').and_then(|p| p.split_once('[')) {
        Some((prefix, _)) if prefix.ends_with('_') => format!("{prefix}01OPENAPIPROBE"),
        _ => "probe".to_owned(),
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_asks_for_the_documented_credentials() {
    let t = TestServer::start().await;
    let doc = served_document(&t).await;
    for ((path, method), op) in operations(&doc) {
        let mut url = path.clone();
        for param in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let param = resolve(&doc, param);
            if param["in"] == "path" {
                let name = param["name"].as_str().unwrap_or_default();
                url = url.replace(&format!("{{{name}}}"), &example_value(&doc, param));
            }
        }
        let req = t.http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), t.url(&url));
        // A server-sent event stream answers its headers and then stays open: the status is enough.
        let res = tokio::time::timeout(std::time::Duration::from_secs(30), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {url} did not answer"))
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = if status == 200 { Value::Null } else { res.json().await.unwrap_or(Value::Null) };
        assert_ne!(status, 405, "{method} {path} is documented but not routed for {method}");
        assert!(
            !(status == 404 && body["error"]["code"] == "route_not_found"),
            "{method} {path} is documented but not routed"
        );
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured {
            assert_eq!(status, 401, "{method} {url} without credentials: {body}");
            assert!(op["responses"].get("401").is_some());
        } else {
            assert_ne!(status, 401, "{method} {url} is documented as public: {body}");
        }
        if status >= 400 {
            assert!(body["error"]["code"].is_string(), "{method} {url}: {status} without the error envelope: {body}");
            let documented = op["responses"].get(status.to_string()).is_some();
            assert!(documented, "{method} {url} answered {status}, which the document does not list: {body}");
        }
    }
}

/// The `.route(..)` calls of the router source, expanded: `(path, METHOD)`.
fn source_routes(source: &str) -> BTreeSet<(String, String)> {
    let code = strip_comments(source);
    let mut routes = BTreeSet::new();
    // `fn webhook_routes(base)`: a table of `(suffix, methods)` mounted under each base it is
    // merged at.
    let table_start = code.find("fn webhook_routes").expect("webhook_routes in the router source");
    let table_end = table_start + code[table_start..].find("routes.into_iter()").expect("the table's fold");
    let mut table = Vec::new();
    let mut rest = &code[table_start..table_end];
    while let Some(at) = rest.find("(\"") {
        let (suffix, after) = string_literal(&rest[at + 1..]);
        let after = after.trim_start().strip_prefix(',').expect("a (path, methods) tuple");
        let (expr, after) = balanced(after);
        table.push((suffix, methods_of(&expr)));
        rest = after;
    }
    assert!(!table.is_empty(), "the webhook route table is empty");
    let router_code = &code[..table_start];
    let mut rest = router_code;
    while let Some(at) = rest.find(".merge(webhook_routes(") {
        let (base, after) = string_literal(&rest[at + ".merge(webhook_routes(".len()..]);
        for (suffix, methods) in &table {
            for m in methods {
                routes.insert((format!("{base}{suffix}"), m.clone()));
            }
        }
        rest = after;
    }
    let mut rest = router_code;
    while let Some(at) = rest.find(".route(") {
        let (path, after) = string_literal(&rest[at + ".route(".len()..]);
        let after = after.trim_start().strip_prefix(',').expect("a .route(path, methods) call");
        let (expr, after) = balanced(after);
        let methods = methods_of(&expr);
        assert!(!methods.is_empty(), "no method in .route({path:?}, {expr})");
        for m in methods {
            routes.insert((path.clone(), m));
        }
        rest = after;
    }
    routes
}

/// Removes `//` comments (outside string literals).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Parses the string literal at the start of `s` (after whitespace); returns it and the rest.
fn string_literal(s: &str) -> (String, &str) {
    let s = s.trim_start().strip_prefix('"').unwrap_or_else(|| panic!("expected a string literal at {s:.40}"));
    let end = s.find('"').expect("a closed string literal");
    (s[..end].to_owned(), &s[end + 1..])
}

/// The expression at the start of `s`, up to the `,` or `)` that closes the enclosing call;
/// returns it and the rest.
fn balanced(s: &str) -> (String, &str) {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return (s[..i].trim().to_owned(), &s[i..]),
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return (s[..i].trim().to_owned(), &s[i..]),
            _ => {}
        }
    }
    panic!("unbalanced expression: {s:.80}")
}

/// The HTTP methods of a method-router chain such as `get(a::b).post(a::c)`: the calls at the
/// chain's top level whose names are methods.
fn methods_of(expr: &str) -> Vec<String> {
    let mut methods = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut ident = String::new();
    for c in expr.chars() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => {
                if depth == 0 && METHODS.contains(&ident.as_str()) {
                    methods.push(ident.to_ascii_uppercase());
                }
                depth += 1;
            }
            ')' => depth -= 1,
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            ident.push(c);
        } else {
            ident.clear();
        }
    }
    methods
}

#[test]
fn the_route_parser_reads_chains_tables_and_wrapped_calls() {
    let source = r#"
        Router::new()
            .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
            // .route("/commented", get(x))
            .route("/a/{id}", get(a::get).patch(a::update).delete(a::delete))
            .route(
                "/b/{id}/c",
                post(b::create),
            )
            .merge(webhook_routes("/base/{line_id}"))
    }
    fn webhook_routes(base: &str) -> Router<AppState> {
        let routes: [(&str, MethodRouter<AppState>); 2] = [
            ("", get(w::list).post(w::upsert)),
            ("/{webhook_id}/secret", post(w::rotate)),
        ];
        routes.into_iter().fold(Router::new(), |r, (p, m)| r.route(&format!("{base}{p}"), m))
    }"#;
    let found: Vec<(String, String)> = source_routes(source).into_iter().collect();
    let want: Vec<(String, String)> = [
        ("/a/{id}", "DELETE"),
        ("/a/{id}", "GET"),
        ("/a/{id}", "PATCH"),
        ("/b/{id}/c", "POST"),
        ("/base/{line_id}", "GET"),
        ("/base/{line_id}", "POST"),
        ("/base/{line_id}/{webhook_id}/secret", "POST"),
        ("/healthz", "GET"),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_owned(), m.to_owned()))
    .collect();
    assert_eq!(found, want);
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_and_nothing_else() {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crates/ezw-http/src/routes/mod.rs"))
        .expect("the router source");
    let routed: BTreeSet<(String, String)> = source_routes(&source).into_iter().map(|(p, m)| (shape(&p), m)).collect();
    let t = TestServer::start().await;
    let doc = served_document(&t).await;
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().map(|(p, m)| (shape(&p), m)).collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.json: {undocumented:?}");
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "docs/openapi.json documents routes the router does not have: {unrouted:?}");
}
