// One round trip through a router with the official PocketBase JS SDK, as
// an application would make it: superuser auth, a new collection, record
// CRUD, a 5 MB file upload and its download, a realtime subscription that
// receives a create event.
//
//   node roundtrip.mjs BASE-URL EMAIL PASSWORD
//
// BASE-URL is the routed address (http://NAME.localhost:PORT). The SDK and
// its EventSource are imported from the node_modules directory named by
// POCKESTRATOR_SDK_MODULES (scripts/fetch-test-deps installs them).
//
// Prints one JSON line and exits 0 when every step passed; on a failure the
// line names the step and the error, and the exit status is 1.
//
// Host names: glibc's resolver does not resolve `*.localhost` (RFC 6761
// says it should be loopback, browsers do so themselves), and neither does
// Node. Both Node's fetch (undici) and its http module connect through
// `net`, which asks `dns.lookup`; it is patched, before anything connects,
// to answer 127.0.0.1 for `localhost` and `*.localhost`. The URL and the
// Host header stay as given, so the router still routes by name.
//
// Realtime: the SDK subscribes through the global `EventSource`, which
// Node 20 does not have; the `eventsource` package (itself over fetch) is
// installed as that global.

import dns from "node:dns";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const systemLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === "function") {
    callback = options;
    options = {};
  } else if (typeof options === "number") {
    options = { family: options };
  }
  const name = String(hostname).toLowerCase();
  if (name === "localhost" || name.endsWith(".localhost")) {
    if (options && options.all) {
      process.nextTick(callback, null, [{ address: "127.0.0.1", family: 4 }]);
    } else {
      process.nextTick(callback, null, "127.0.0.1", 4);
    }
    return {};
  }
  return systemLookup.call(dns, hostname, options, callback);
};

const FILE_BYTES = 5 * 1024 * 1024;
const STEP_TIMEOUT_MS = 20_000;

const [base, email, password] = process.argv.slice(2);
const result = { ok: false, base, steps: {} };
let current = "setup";

function finish(code) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

// The whole run is bounded; a hung step fails it instead of hanging the test.
setTimeout(() => {
  result.failed_step = current;
  result.error = "the round trip took longer than 90 s";
  finish(1);
}, 90_000).unref();

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function step(name, run) {
  current = name;
  const value = await withTimeout(Promise.resolve().then(run), name);
  result.steps[name] = true;
  return value;
}

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

async function main() {
  if (!base || !email || !password) {
    throw new Error("usage: node roundtrip.mjs BASE-URL EMAIL PASSWORD");
  }
  const modules = process.env.POCKESTRATOR_SDK_MODULES;
  if (!modules) {
    throw new Error("POCKESTRATOR_SDK_MODULES is not set (the SDK's node_modules)");
  }
  const require = createRequire(join(modules, "noop.js"));
  const sdk = await import(pathToFileURL(require.resolve("pocketbase")).href);
  const { EventSource } = await import(pathToFileURL(require.resolve("eventsource")).href);
  globalThis.EventSource = EventSource;
  const PocketBase = sdk.default;
  result.sdk_version = JSON.parse(
    readFileSync(join(modules, "pocketbase", "package.json"), "utf8"),
  ).version;

  const pb = new PocketBase(base);
  pb.autoCancellation(false);

  await step("superuser_auth", async () => {
    const auth = await pb.collection("_superusers").authWithPassword(email, password);
    if (!pb.authStore.isValid || auth.record.email !== email) {
      throw new Error("no valid superuser token after auth-with-password");
    }
  });

  const collection = `sdk_${randomBytes(4).toString("hex")}`;
  result.collection = collection;
  await step("create_collection", async () => {
    const created = await pb.collections.create({
      name: collection,
      type: "base",
      fields: [
        { name: "title", type: "text" },
        { name: "attachment", type: "file", maxSelect: 1, maxSize: 2 * FILE_BYTES },
      ],
    });
    if (created.name !== collection) {
      throw new Error(`created collection is named ${created.name}`);
    }
  });

  // Subscribe before the record exists: the create must arrive as an event.
  let resolveEvent;
  const firstCreate = new Promise((resolve) => {
    resolveEvent = resolve;
  });
  const events = [];
  const unsubscribe = await step("realtime_subscribe", () =>
    pb.collection(collection).subscribe("*", (e) => {
      events.push({ action: e.action, record_id: e.record.id });
      if (e.action === "create") {
        resolveEvent(e);
      }
    }),
  );

  const record = await step("record_create", () =>
    pb.collection(collection).create({ title: "first" }),
  );
  result.record_id = record.id;

  const event = await step("realtime_create_event", () => firstCreate);
  result.realtime = { action: event.action, record_id: event.record.id, collection: event.record.collectionName };

  await step("record_read", async () => {
    const read = await pb.collection(collection).getOne(record.id);
    if (read.title !== "first") {
      throw new Error(`read back title ${JSON.stringify(read.title)}`);
    }
  });
  await step("record_update", async () => {
    const updated = await pb.collection(collection).update(record.id, { title: "second" });
    if (updated.title !== "second") {
      throw new Error(`updated title is ${JSON.stringify(updated.title)}`);
    }
  });
  await step("record_list", async () => {
    const list = await pb.collection(collection).getList(1, 50, { filter: pb.filter("title = {:t}", { t: "second" }) });
    if (list.totalItems !== 1 || list.items[0].id !== record.id) {
      throw new Error(`list found ${list.totalItems} records`);
    }
  });
  await step("record_delete", async () => {
    await pb.collection(collection).delete(record.id);
    try {
      await pb.collection(collection).getOne(record.id);
    } catch (e) {
      if (e.status === 404) {
        return;
      }
      throw e;
    }
    throw new Error("the deleted record is still there");
  });

  const bytes = randomBytes(FILE_BYTES);
  result.upload = { bytes: bytes.length, sha256: sha256(bytes) };
  const withFile = await step("file_upload", () =>
    pb.collection(collection).create({
      title: "with a file",
      attachment: new File([bytes], "payload.bin", { type: "application/octet-stream" }),
    }),
  );
  result.file_record_id = withFile.id;
  result.file_name = withFile.attachment;

  await step("file_download", async () => {
    const url = pb.files.getURL(withFile, withFile.attachment);
    const resp = await fetch(url);
    if (!resp.ok) {
      throw new Error(`GET ${url}: ${resp.status}`);
    }
    const got = Buffer.from(await resp.arrayBuffer());
    result.download = { bytes: got.length, sha256: sha256(got) };
  });

  await step("realtime_unsubscribe", () => unsubscribe());
  result.events = events;
  result.ok = true;
}

main().then(
  () => finish(0),
  (e) => {
    result.failed_step = current;
    result.error = e && e.response ? `${e.message} ${JSON.stringify(e.response)}` : String(e && e.stack ? e.stack : e);
    finish(1);
  },
);
