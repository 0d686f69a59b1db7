"""Prepares a fresh demo ezw-server for schemathesis and prints the schemathesis.toml to use.

Usage: prepare.py <base URL> <demo.json> <output directory>

Logs in as the demo owner, creates a few real resources (a webhook, a message and its
conversation, a Meta and a Twilio line with fake credentials whose vendor URLs point at a closed
loopback port, ...) and writes a configuration in which path parameters are often those real ids
(so the 2xx answers are checked against the document too, not only the 404s of random ids) and
both security schemes carry their tokens: `<output directory>/<run>.toml` for each run. Only the
standard library: it runs in the venv's Python.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

# The schemathesis runs of the stage, each with its own configuration.
RUNS = ("channel", "workspace")

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


# The smallest valid PNG (1x1, transparent).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def multipart_image_send(base, line, token, conversation):
    """POST /api/lines/{line}/send with a PNG; the message, or None before the route exists."""
    boundary = "ezwschemathesisfixture"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="conversationId"\r\n\r\n{conversation}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="dot.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + PNG
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    req = urllib.request.Request(f"{base}/api/lines/{line}/send", data=b"".join(parts), method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Idempotency-Key", "schemathesis-fixture-image")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read().decode())
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        if e.code == 404 and "route_not_found" in text:
            return None
        sys.exit(f"prepare: image send answered {e.code}: {text}")


def toml_string(s):
    return json.dumps(s)  # a JSON string is a valid TOML basic string for these ASCII values


def main():
    base, demo_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    demo = json.load(open(demo_path))
    line, line_token = demo["lineId"], demo["lineToken"]
    login = must(call(base, "POST", "/api/auth/login", body={"email": demo["email"], "password": demo["password"]}), 200)
    id_token = login["idToken"]
    ids = {"lineId": [line]}
    queries = {}
    bodies = {}

    # Each run (the Channel API's, the workspace's) gets its own webhook, with a delivery: a run's
    # DELETE pass may remove it.
    webhooks = {}
    for run in RUNS:
        webhooks[run] = must(
            call(base, "POST", f"/api/lines/{line}/webhooks", id_token, {"targetUrl": f"{CLOSED}/ezw-hook-{run}"}), 201
        )["id"]
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
    per_run = {}
    for run, webhook in webhooks.items():
        listed = must(call(base, "GET", f"/api/lines/{line}/webhooks/{webhook}/deliveries", id_token), 200)
        per_run[run] = {"webhookId": [webhook], "deliveryId": [d["id"] for d in listed["deliveries"]][:1]}
    # Body fields that name things: real ones, so sends, forwards and assignments can succeed.
    bodies["conversationId"] = ids["conversationId"]
    bodies["forwardMessageId"] = ids["messageId"]
    bodies["targetUserId"] = [login["user"]["id"]]
    bodies["userId"] = [login["user"]["id"]]
    # A second session whose refresh token the fuzzer may use (and, reusing it, revoke).
    second = must(call(base, "POST", "/api/auth/login", body={"email": demo["email"], "password": demo["password"]}), 200)
    bodies["refreshToken"] = [second["refreshToken"]]

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

    # An image sent from the workspace: an attachment, and a signed URL to it.
    image = multipart_image_send(base, line, id_token, sent["conversationId"])
    if image is not None:
        attachment = image.get("media", {}).get("attachmentId")
        if attachment:
            ids["attachmentId"] = [attachment]
            signed = must(call(base, "GET", f"/api/attachments/{attachment}/url?expiresInSeconds=3600", id_token), 200)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(signed["url"]).query)
            queries["expires"] = [int(v) for v in query["expires"]]
            queries["signature"] = query["signature"]

    # Resources of routes that later builds add; skipped while the route does not exist.
    note = call(base, "POST", f"/api/conversations/{sent['conversationId']}/notes", id_token, {"body": "fixture"})
    must(note, 201) if routed(note) else None
    invite = call(base, "POST", "/api/memberships", id_token, {"email": "operator@fixture.test", "role": "operator"})
    if routed(invite) and invite[0] == 201:
        ids["targetUserId"] = [invite[1]["member"]["userId"]]
        bodies["token"] = [invite[1]["invitationToken"]]

    for run in RUNS:
        with open(os.path.join(out_dir, f"{run}.toml"), "w") as f:
            f.write(config(id_token, line_token, {**ids, **per_run[run]}, queries, bodies))
    named = [("path", ids), ("query", queries), ("body", bodies)]
    shown = ", ".join(f"{where}.{name} ({len(v)})" for where, values in named for name, v in values.items() if v)
    print(f"fixtures: {shown}; a webhook with a delivery for each of {', '.join(RUNS)}", file=sys.stderr)


def config(id_token, line_token, ids, queries, bodies):
    """The schemathesis.toml of one run."""
    out = [
        "[auth.openapi.idToken]",
        f"bearer = {toml_string(id_token)}",
        "[auth.openapi.lineToken]",
        f"bearer = {toml_string(line_token)}",
        # 501 is an answer of the contract (a provider or storage this deployment does not run),
        # documented where it applies; any other 5xx fails the run.
        "[checks.not_a_server_error]",
        'expected-statuses = ["2xx", "3xx", "4xx", "501"]',
    ]
    bindings = {}
    for location, values in (("path", ids), ("query", queries), ("body", bodies)):
        for name, entries in values.items():
            if entries:
                bindings[f"{location}.{name}"] = (f"{location}_{name}", entries)
    for dictionary, entries in bindings.values():
        out += [f"[dictionaries.{dictionary}]", "values = [" + ", ".join(toml_string(v) for v in entries) + "]"]
    out.append("[parameters]")
    for key, (dictionary, _) in bindings.items():
        out.append(f'"{key}" = {{ dictionary = "{dictionary}", probability = 0.8 }}')
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
