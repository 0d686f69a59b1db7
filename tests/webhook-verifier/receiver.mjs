// A webhook receiver that verifies EZW's deliveries with the official Standard Webhooks library,
// as a customer's Node receiver would. Used by tests/it/webhook_verifier.rs; .ci/run starts it.
//
//   POST /config  {"secret":"whsec_..."}  sets the secret and clears the results
//   POST /hook    a delivery: 204 if it verifies, else 400
//   GET  /results [{deliveryId, event, verified, signatures, payload?, error?}, ...]
//   GET  /        {"library":"standardwebhooks@<version>"} (readiness)
import { createRequire } from "node:module";
import http from "node:http";
import { Webhook } from "standardwebhooks";

const require = createRequire(import.meta.url);
const library = `standardwebhooks@${require("standardwebhooks/package.json").version}`;
const port = Number(process.env.PORT || 17120);

let webhook = null;
let results = [];

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function reply(res, status, body) {
  res.writeHead(status, body === undefined ? {} : { "content-type": "application/json" });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const body = await readBody(req);
  if (req.method === "POST" && req.url === "/config") {
    webhook = new Webhook(JSON.parse(body.toString("utf8")).secret);
    results = [];
    return reply(res, 204);
  }
  if (req.method === "POST" && req.url === "/hook") {
    const record = {
      deliveryId: req.headers["webhook-id"],
      event: req.headers["x-ezw-webhook-event"],
      verified: false,
      signatures: (req.headers["webhook-signature"] || "").split(" ").filter(Boolean).length,
    };
    try {
      if (!webhook) throw new Error("no secret configured (POST /config first)");
      record.payload = webhook.verify(body, req.headers); // the raw bytes, as sent
      record.verified = true;
    } catch (e) {
      record.error = String(e.message || e);
    }
    results.push(record);
    return reply(res, record.verified ? 204 : 400);
  }
  if (req.method === "GET" && req.url === "/results") return reply(res, 200, results);
  if (req.method === "GET" && req.url === "/") return reply(res, 200, { library });
  reply(res, 404, { error: "not found" });
});

server.listen(port, "127.0.0.1", () => console.log(`webhook verifier (${library}) on 127.0.0.1:${port}`));
