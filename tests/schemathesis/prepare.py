"""Prepares a fresh demo ezw-server for schemathesis and prints the schemathesis.toml to use.

Usage: prepare.py <base URL> <demo.json>

Logs in as the demo owner, creates a few real resources (a webhook, a message and its
conversation, a Meta and a Twilio line with fake credentials whose vendor URLs point at a closed
loopback port, ...) and writes a configuration in which path parameters are often those real ids
(so the 2xx answers are checked against the document too, not only the 404s of random ids) and
both security schemes carry their tokens. Only the standard library: it runs in the venv's Python.
"""

import json
import sys
import urllib.error
import urllib.request

# A port nothing listens on inside the stage's network namespace: vendor calls fail at once.
CLOSED = "http://127.0.0.1:9"


def call(base, method, path, token=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            text = res.read().decode()
            return res.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def must(result, *ok):
    status, body = result
    if status not in ok:
        sys.exit(f"prepare: unexpected {status}: {body}")
    return body


def routed(result):
    """False when the route does not exist (yet) in this build."""
    status, body = result
    return not (status == 404 and isinstance(body, dict) and body.get("error", {}).get("code") == "route_not_found")


def toml_string(s):
    return json.dumps(s)  # a JSON string is a valid TOML basic string for these ASCII values


def main():
    base, demo_path = sys.argv[1], sys.argv[2]
    demo = json.load(open(demo_path))
    line, line_token = demo["lineId"], demo["lineToken"]
    login = must(call(base, "POST", "/api/auth/login", body={"email": demo["email"], "password": demo["password"]}), 200)
    id_token = login["idToken"]
    ids = {"lineId": [line]}

    webhook = must(
        call(base, "POST", f"/api/lines/{line}/webhooks", id_token, {"targetUrl": CLOSED + "/ezw-hook"}), 201
    )
    ids["webhookId"] = [webhook["id"]]
    sent = must(
        call(
            base,
            "POST",
            "/api/v1/messages/text",
            line_token,
            {"to": "+15550100002", "body": "schemathesis fixture"},
            {"Idempotency-Key": "schemathesis-fixture-1"},
        ),
        202,
    )
    ids["messageId"] = [sent["id"]]
    ids["conversationId"] = [sent["conversationId"]]
    deliveries = must(call(base, "GET", f"/api/lines/{line}/webhooks/{webhook['id']}/deliveries", id_token), 200)
    ids["deliveryId"] = [d["id"] for d in deliveries["deliveries"]][:1]

    meta = must(
        call(
            base,
            "POST",
            "/api/lines",
            id_token,
            {
                "displayName": "Meta fixture",
                "phoneNumber": "+15550100003",
                "provider": {
                    "kind": "meta",
                    "phoneNumberId": "1065403522",
                    "wabaId": "1022901293",
                    "appId": "1234567890",
                    "appSecret": "0123456789abcdef0123456789abcdef",
                    "accessToken": "fixture-access-token",
                    "verifyToken": "fixture-verify-token",
                    "apiBaseUrl": CLOSED,
                },
            },
        ),
        201,
    )
    twilio = must(
        call(
            base,
            "POST",
            "/api/lines",
            id_token,
            {
                "displayName": "Twilio fixture",
                "phoneNumber": "+15550100004",
                "provider": {
                    "kind": "twilio",
                    "accountSid": "AC0123456789abcdef0123456789abcdef",
                    "authToken": "0123456789abcdef0123456789abcdef",
                    "from": "+15550100004",
                    "apiBaseUrl": CLOSED,
                },
            },
        ),
        201,
    )
    ids["lineId"] += [meta["id"], twilio["id"]]

    # Resources of routes that later builds add; skipped while the route does not exist.
    note = call(base, "POST", f"/api/conversations/{sent['conversationId']}/notes", id_token, {"body": "fixture"})
    if routed(note) and note[0] == 201:
        ids["noteId"] = [note[1]["id"]]
    invite = call(base, "POST", "/api/memberships", id_token, {"email": "operator@fixture.test", "role": "operator"})
    if routed(invite) and invite[0] == 201:
        ids["targetUserId"] = [invite[1]["member"]["userId"]]

    out = [
        "[auth.openapi.idToken]",
        f"bearer = {toml_string(id_token)}",
        "[auth.openapi.lineToken]",
        f"bearer = {toml_string(line_token)}",
    ]
    for name, values in ids.items():
        if values:
            out += [f"[dictionaries.{name}]", "values = [" + ", ".join(toml_string(v) for v in values) + "]"]
    out.append("[parameters]")
    for name, values in ids.items():
        if values:
            out.append(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.8 }}')
    print("\n".join(out))


if __name__ == "__main__":
    main()
