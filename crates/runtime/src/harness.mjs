// The HelixStack function harness. It runs inside a function instance's
// sandbox: it listens on a Unix socket, waits for the server to assign
// it a function (`POST /__helix/load`), then adapts every request to the
// handler shape that function uses (Vercel, Netlify v1/v2, Cloudflare
// Pages) and streams the response back. Console output is tagged with the
// request it belongs to.
import http from "node:http";
import fs from "node:fs";
import { AsyncLocalStorage } from "node:async_hooks";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";

const SOCKET = process.env.HELIX_SOCKET;
let loaded = null; // { shape, handle(req, res) }

// --- logs -------------------------------------------------------------
// Which request a console line belongs to. Exact tagging takes an
// AsyncLocalStorage, which in Node 20 costs every request as much as the
// rest of the harness (its hooks run for every async resource), so it
// starts when the function first logs: a function that never logs never
// pays. That first line goes to the latest request (exact when requests
// come one at a time, a guess when they overlap), and so does the rest of
// the code it runs in; other requests already in flight then log untagged.
let context = null;
let latest = "";
const rawWrite = (fd, text) => { try { fs.writeSync(fd, text); } catch {} };
function tagged(stream) {
  return (...args) => {
    if (!context) {
      context = new AsyncLocalStorage();
      if (latest) context.enterWith(latest);
    }
    const r = context.getStore() ?? "";
    const msg = args.map((a) => (typeof a === "string" ? a : inspect(a))).join(" ");
    rawWrite(1, JSON.stringify({ r, s: stream, m: msg }) + "\n");
  };
}
function inspect(v) {
  if (v instanceof Error) return v.stack ?? String(v);
  try { return JSON.stringify(v) ?? String(v); } catch { return String(v); }
}
console.log = console.info = console.debug = tagged("out");
console.error = console.warn = console.trace = tagged("err");

// --- helpers ----------------------------------------------------------
const MAX_BUFFERED = Number(process.env.HELIX_MAX_BODY ?? 6 * 1024 * 1024);
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BUFFERED) throw Object.assign(new Error("request body too large"), { status: 413 });
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
// What the server says about a request, in its `x-helix-*` headers: read
// from the raw headers once (building `req.headers` costs; a handler that
// never reads them should not pay for it).
const HELIX = Symbol("helix");
function helixOf(req) {
  let h = req[HELIX];
  if (h === undefined) {
    h = { id: "", url: undefined, params: undefined };
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i];
      if (!k.startsWith("x-helix-")) continue;
      if (k === "x-helix-request-id") h.id = raw[i + 1];
      else if (k === "x-helix-url") h.url = raw[i + 1];
      else if (k === "x-helix-params") h.params = raw[i + 1];
    }
    req[HELIX] = h;
  }
  return h;
}
function requestUrl(req) {
  return new URL(helixOf(req).url ?? `http://localhost${req.url}`);
}
function webRequest(req, url) {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith("x-helix-")) continue;
    for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
  }
  const hasBody = !["GET", "HEAD"].includes(req.method);
  return new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) : undefined,
    duplex: hasBody ? "half" : undefined,
  });
}
async function sendWeb(res, response) {
  if (!(response instanceof Response)) throw new TypeError("the function did not return a Response");
  const headers = {};
  response.headers.forEach((v, k) => {
    // Framing is the body's own, as on the Web platform.
    if (k === "set-cookie" || k === "content-length" || k === "transfer-encoding" || k === "connection") return;
    headers[k] = v;
  });
  const cookies = response.headers.getSetCookie?.() ?? [];
  if (cookies.length) headers["set-cookie"] = cookies;
  // What the rest of the deployment answered, handed back unread: the
  // edge serves that body itself (with these headers).
  const rest = response.body ? passedOn.get(response.body) : undefined;
  if (rest !== undefined && !response.body.locked && !response.bodyUsed) {
    headers["x-helix-fallthrough"] = "1";
    if (rest) headers["x-helix-rewrite"] = rest;
    res.writeHead(response.status, headers).end();
    response.body.cancel().catch(() => {});
    return;
  }
  res.writeHead(response.status, response.statusText || undefined, headers);
  if (response.body) {
    for await (const chunk of response.body) {
      if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
    }
  }
  res.end();
}
function parseCookies(header) {
  const out = {};
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
  }
  return out;
}
function params(req) {
  const p = helixOf(req).params;
  if (p === undefined) return {};
  try { return JSON.parse(p); } catch { return {}; }
}
function waitUntil(promise) {
  Promise.resolve(promise).catch((e) => console.error(e));
}

// --- Vercel -----------------------------------------------------------
const METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"];
function vercel(mod) {
  const def = mod.default;
  if (typeof def === "function") return nodeHandler(def);
  if (def && typeof def.fetch === "function") return async (req, res) => sendWeb(res, await def.fetch(webRequest(req, requestUrl(req))));
  const named = METHODS.filter((m) => typeof mod[m] === "function");
  if (named.length === 0 && typeof mod.fetch === "function") return async (req, res) => sendWeb(res, await mod.fetch(webRequest(req, requestUrl(req))));
  if (named.length === 0) throw new Error("no handler: export a default function, a default { fetch }, or GET/POST/… functions");
  return async (req, res) => {
    const fn = mod[req.method];
    if (typeof fn !== "function") {
      res.writeHead(405, { allow: named.join(", "), "content-type": "text/plain" });
      return res.end("method not allowed\n");
    }
    await sendWeb(res, await fn(webRequest(req, requestUrl(req))));
  };
}
// Vercel's request helpers, lazy getters on the prototype (computed when
// read, not per request); a handler may still assign its own.
function lazy(name, compute) {
  const key = Symbol(name);
  Object.defineProperty(http.IncomingMessage.prototype, name, {
    get() { return (this[key] ??= compute(this)); },
    set(v) { this[key] = v; },
    configurable: true,
  });
}
lazy("cookies", (req) => parseCookies(req.headers.cookie));
lazy("query", (req) => {
  // The URL the visitor asked for (or a rewrite's), else the request's.
  const url = helixOf(req).url ?? req.url;
  const at = url.indexOf("?");
  const query = at < 0 ? {} : Object.fromEntries(new URLSearchParams(url.slice(at + 1)));
  return Object.assign(query, params(req));
});
// Vercel's response helpers, on the prototype once (not per request).
const proto = http.ServerResponse.prototype;
proto.status = function (code) { this.statusCode = code; return this; };
proto.json = function (value) {
  if (!this.getHeader("content-type")) this.setHeader("content-type", "application/json; charset=utf-8");
  this.end(JSON.stringify(value));
  return this;
};
proto.send = function (value) {
  if (value === undefined || value === null) { this.end(); return this; }
  if (Buffer.isBuffer(value)) {
    if (!this.getHeader("content-type")) this.setHeader("content-type", "application/octet-stream");
    this.end(value);
  } else if (typeof value === "object") {
    return this.json(value);
  } else {
    if (!this.getHeader("content-type")) this.setHeader("content-type", "text/html; charset=utf-8");
    this.end(String(value));
  }
  return this;
};
proto.redirect = function (a, b) {
  const [status, location] = typeof a === "number" ? [a, b] : [307, a];
  this.writeHead(status, { location });
  this.end();
  return this;
};

function nodeHandler(fn) {
  // A request without a body goes straight to the handler (no promise of
  // ours per request); one with a body is read and parsed first.
  const withBody = async (req, res) => {
    const raw = await readBody(req);
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim();
    let body = raw.length ? raw : undefined;
    try {
      if (type === "application/json" && raw.length) body = JSON.parse(raw.toString("utf8"));
      else if (type === "application/x-www-form-urlencoded") body = Object.fromEntries(new URLSearchParams(raw.toString("utf8")));
      else if (type.startsWith("text/")) body = raw.toString("utf8");
    } catch {
      res.writeHead(400, { "content-type": "text/plain" });
      return res.end("invalid JSON body\n");
    }
    req.body = body;
    return fn(req, res);
  };
  // A handler that returns without ending waits for its own callbacks;
  // the server's timeout covers one that never ends.
  return (req, res) => (req.method === "GET" || req.method === "HEAD" ? fn(req, res) : withBody(req, res));
}

// --- Netlify ----------------------------------------------------------
function netlify(mod) {
  const v1 = mod.handler ?? mod.default?.handler;
  if (typeof v1 === "function") return lambda(v1);
  const def = mod.default;
  const fn = typeof def === "function" ? def : typeof def?.fetch === "function" ? def.fetch.bind(def) : null;
  if (!fn) throw new Error("no handler: export `handler` (v1) or a default function (v2)");
  return async (req, res) => {
    const url = requestUrl(req);
    const request = webRequest(req, url);
    const context = {
      params: params(req),
      requestId: helixOf(req).id,
      cookies: cookieJar(req.headers.cookie),
      geo: { country: { code: req.headers["x-country"] } },
      ip: req.headers["x-forwarded-for"]?.split(",")[0]?.trim(),
      site: { url: process.env.URL, name: process.env.SITE_NAME },
      deploy: { id: process.env.DEPLOY_ID, context: process.env.CONTEXT },
      url,
      waitUntil,
    };
    let response = await fn(request, context);
    if (response === undefined) response = new Response(null, { status: 204 });
    await sendWeb(res, response);
  };
}
function cookieJar(header) {
  const all = parseCookies(header);
  return { get: (name) => all[name], set() {}, delete() {} };
}
function lambda(handler) {
  return async (req, res) => {
    const url = requestUrl(req);
    const raw = await readBody(req);
    const single = {};
    const multi = {};
    for (const [k, v] of url.searchParams) {
      (multi[k] ??= []).push(v);
      single[k] = single[k] === undefined ? v : `${single[k]}, ${v}`;
    }
    const headers = {};
    const multiHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith("x-helix-")) continue;
      headers[k] = Array.isArray(v) ? v.join(", ") : v;
      multiHeaders[k] = Array.isArray(v) ? v : [v];
    }
    const text = raw.toString("utf8");
    const binary = raw.length > 0 && Buffer.from(text, "utf8").compare(raw) !== 0;
    const event = {
      path: url.pathname,
      httpMethod: req.method,
      headers,
      multiValueHeaders: multiHeaders,
      queryStringParameters: single,
      multiValueQueryStringParameters: multi,
      body: raw.length ? (binary ? raw.toString("base64") : text) : null,
      isBase64Encoded: binary,
      rawUrl: url.href,
      rawQuery: url.search.slice(1),
    };
    const context = { awsRequestId: helixOf(req).id, functionName: process.env.HELIX_FUNCTION, callbackWaitsForEmptyEventLoop: true };
    const result = await new Promise((resolve, reject) => {
      const r = handler(event, context, (err, value) => (err ? reject(err) : resolve(value)));
      if (r && typeof r.then === "function") r.then(resolve, reject);
    });
    const out = { ...(result?.headers ?? {}) };
    for (const [k, vs] of Object.entries(result?.multiValueHeaders ?? {})) out[k] = vs;
    res.writeHead(result?.statusCode ?? 200, out);
    const body = result?.body ?? "";
    res.end(result?.isBase64Encoded ? Buffer.from(body, "base64") : body);
  };
}

// Netlify Edge Functions: a Response ends the request; a URL rewrites it;
// nothing (or the response of `context.next()`) passes it on.
function netlifyEdge(mod) {
  const fn = typeof mod.default === "function" ? mod.default : null;
  if (!fn) throw new Error("no handler: export a default function");
  return async (req, res) => {
    const url = requestUrl(req);
    const request = webRequest(req, url);
    const own = url.pathname + url.search;
    const context = {
      params: params(req),
      requestId: helixOf(req).id,
      cookies: cookieJar(req.headers.cookie),
      geo: { country: { code: req.headers["x-country"] } },
      site: { url: process.env.URL, name: process.env.SITE_NAME },
      waitUntil,
      next: (r) => passOn(r ?? request, own),
    };
    let out = await fn(request, context);
    if (out instanceof URL) {
      if (out.origin !== url.origin) throw new Error("an edge function may only rewrite to its own site");
      out = new Response(null, { headers: { "x-helix-fallthrough": "1", "x-helix-rewrite": out.pathname + out.search } });
    }
    await sendWeb(res, out ?? fallthrough());
  };
}

// --- Cloudflare Pages -------------------------------------------------
async function pages(routes) {
  // routes: [{ pattern, method, file, middleware, mount }], in precedence order.
  const compiled = [];
  for (const r of routes) {
    const mod = await importing(r.file);
    const name = r.method ? `onRequest${r.method[0]}${r.method.slice(1).toLowerCase()}` : "onRequest";
    let handlers = mod[name];
    if (handlers === undefined) continue;
    handlers = Array.isArray(handlers) ? handlers : [handlers];
    compiled.push({ ...r, regex: new RegExp(r.pattern), handlers });
  }
  return async (req, res) => {
    const url = requestUrl(req);
    const path = url.pathname;
    const chain = [];
    let params = {};
    for (const r of compiled.filter((r) => r.middleware)) {
      if (r.regex.test(path) && (!r.method || r.method === req.method)) chain.push(...r.handlers);
    }
    const route = compiled.find((r) => !r.middleware && r.regex.test(path) && (!r.method || r.method === req.method));
    if (route) {
      const m = route.regex.exec(path);
      for (const [k, v] of Object.entries(m.groups ?? {})) {
        params[k] = route.catchall?.includes(k) ? (v ? v.split("/").filter(Boolean) : []) : v;
      }
      chain.push(...route.handlers);
    }
    const data = {};
    const own = url.pathname + url.search;
    const first = webRequest(req, url);
    let request = first;
    let i = 0;
    const assets = (input, init) => passOn(new Request(typeof input === "string" || input instanceof URL ? new URL(input, url) : input, init), own);
    const env = { ...process.env, ASSETS: { fetch: assets } };
    // After `passThroughOnException()`, a throw serves what the request
    // would have got without functions (the static asset), as on Pages.
    let passThrough = false;
    const next = async (input, init) => {
      if (input !== undefined) request = new Request(typeof input === "string" || input instanceof URL ? new URL(input, url) : input, init);
      const handler = chain[i++];
      if (!handler) return passOn(request, own);
      const context = {
        request,
        functionPath: path,
        params,
        env,
        waitUntil,
        passThroughOnException() { passThrough = true; },
        next,
        get data() { return data; },
        set data(v) { if (typeof v !== "object" || v === null) throw new TypeError("context.data must be an object"); Object.assign(data, v); },
      };
      return handler(context);
    };
    let response;
    try {
      response = await next();
    } catch (e) {
      if (!passThrough) throw e;
      console.error(e);
      response = await passOn(first, own);
    }
    await sendWeb(res, response);
  };
}
// Passing a request on to the rest of the deployment (Pages' `next()` and
// `env.ASSETS.fetch()`, a Netlify edge function's `context.next()`): the
// server answers it on its socket, routed within this deployment only.
// The response is real (status, headers, a body to read or rewrite); one
// handed back unread is served by the edge itself (see sendWeb).
const NEXT_SOCKET = process.env.HELIX_NEXT_SOCKET;
const nextAgent = new http.Agent({ keepAlive: true });
const passedOn = new WeakMap(); // unread body → the path it is for ("" when the request's own)
const NULL_BODY = [101, 204, 205, 304];
const WHOLE_BODY_ONLY = ["accept-encoding", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "range", "if-range"];
function passOn(request, own) {
  const url = new URL(request.url);
  const path = url.pathname + url.search;
  const headers = {};
  // The whole body as stored: a function reading it wants its bytes (not
  // gzip, not a 304 or a range of them). A response handed back unread is
  // served by the edge to the visitor's own conditions.
  request.headers.forEach((v, k) => { if (!WHOLE_BODY_ONLY.includes(k)) headers[k] = v; });
  headers.host = url.host;
  const withBody = request.body && !request.bodyUsed && request.method !== "GET" && request.method !== "HEAD";
  return new Promise((resolve, reject) => {
    const out = http.request({ socketPath: NEXT_SOCKET, agent: nextAgent, method: request.method, path, headers }, (res) => {
      const got = new Headers();
      const raw = res.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i].toLowerCase();
        if (k !== "connection" && k !== "keep-alive" && k !== "transfer-encoding") got.append(k, raw[i + 1]);
      }
      const empty = NULL_BODY.includes(res.statusCode) || request.method === "HEAD";
      if (empty) res.resume();
      const body = empty ? null : Readable.toWeb(res);
      if (body) passedOn.set(body, path === own ? "" : path);
      resolve(new Response(body, { status: res.statusCode, statusText: res.statusMessage, headers: got }));
    });
    out.on("error", (e) => reject(new Error(`passing the request on: ${e.message}`)));
    if (withBody) Readable.fromWeb(request.body).pipe(out);
    else out.end();
  });
}
// The request goes on to the rest of the deployment, with the headers
// the function set on this response (a Netlify edge function that
// returns nothing).
function fallthrough() {
  return new Response(null, { status: 200, headers: { "x-helix-fallthrough": "1" } });
}

// --- the server ---------------------------------------------------------
async function importing(file) {
  try {
    return await import(pathToFileURL(file).href);
  } catch (e) {
    const shown = file.replace(/^\/fn\//, "");
    throw new Error(`${shown}: ${e?.name ?? "Error"}: ${e?.message ?? e}`);
  }
}

async function load(spec) {
  for (const [k, v] of Object.entries(spec.env ?? {})) process.env[k] = v;
  process.chdir(spec.root);
  if (spec.shape === "pages") return pages(spec.routes);
  const mod = await importing(spec.entry);
  if (spec.shape === "vercel") return vercel(mod);
  if (spec.shape === "netlify") return netlify(mod);
  if (spec.shape === "netlify-edge") return netlifyEdge(mod);
  throw new Error(`unknown shape ${spec.shape}`);
}

// Until a function is loaded the server speaks only to the runtime; from
// then on every request is the function's, whatever its path.
let loading = false;
const server = http.createServer({ keepAliveTimeout: 600_000 }, (req, res) => {
  if (!loaded) {
    if (req.url === "/__helix/load" && req.method === "POST" && !loading) {
      loading = true;
      readBody(req)
        .then(async (raw) => {
          loaded = await load(JSON.parse(raw.toString("utf8")));
          res.writeHead(204).end();
        })
        .catch((e) => {
          res.writeHead(500, { "content-type": "text/plain" }).end(String(e?.message ?? e));
        });
    } else if (req.url === "/__helix/warm") {
      res.writeHead(204).end();
    } else {
      res.writeHead(503).end("no function loaded\n");
    }
    return;
  }
  const id = helixOf(req).id;
  latest = id;
  if (context) context.run(id, dispatch, req, res);
  else dispatch(req, res);
});
function dispatch(req, res) {
  const failed = (e) => {
    console.error(e);
    if (!res.headersSent) {
      res.writeHead(e?.status ?? 500, { "content-type": "text/plain", "x-helix-error": "thrown" });
      res.end(e?.status === 413 ? "request body too large\n" : "the function threw an error\n");
    } else {
      res.destroy(e);
    }
  };
  try {
    const out = loaded(req, res);
    if (out && typeof out.then === "function") out.then(undefined, failed);
  } catch (e) {
    failed(e);
  }
}
// Before it says it is ready, a spare warms what its first requests would
// otherwise pay for (some 12 ms of a cold start): the server's accept and
// parse paths, by one request to itself, and the module loader. A runtime
// where that fails or stalls is ready all the same.
let said = false;
const ready = () => {
  if (!said) rawWrite(1, JSON.stringify({ ready: true }) + "\n");
  said = true;
};
server.listen(SOCKET, () => {
  setTimeout(ready, 1000).unref();
  const warm = http.get({ socketPath: SOCKET, path: "/__helix/warm", agent: false }, (res) => {
    res.resume();
    res.on("end", () => import("data:text/javascript,export default 1").then(ready, ready));
  });
  warm.on("error", ready);
});
process.on("uncaughtException", (e) => { rawWrite(2, `uncaught: ${e?.stack ?? e}\n`); process.exit(70); });
process.on("unhandledRejection", (e) => { console.error("unhandled rejection:", e); });
