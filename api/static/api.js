// The public v1 API, as any script would speak it: the API key, the error shape, job events
// and images. Every page goes through here; nothing else calls fetch().

const KEY = "assetrag.apiKey";
let askForKey = async () => null; // main.js installs the key dialog

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return `${this.code}: ${this.message}`;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export function onKeyNeeded(ask) {
  askForKey = ask;
}

// fetch() with the key; a 401 asks for a key (again) and retries, other failures throw an
// ApiError carrying the API's {"error": {"code", "message"}}.
export async function request(path, { method = "GET", json, body, signal } = {}) {
  for (;;) {
    const headers = new Headers();
    const key = apiKey.get();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    if (json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(json);
    }
    const response = await fetch(path, { method, headers, body, signal });
    if (response.status === 401) {
      apiKey.clear();
      const fresh = await askForKey(key ? "That key was refused." : "");
      if (fresh) {
        apiKey.set(fresh);
        continue;
      }
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }
}

async function errorOf(response) {
  try {
    const { error } = await response.json();
    return new ApiError(response.status, error.code, error.message);
  } catch {
    return new ApiError(response.status, "http_" + response.status, response.statusText);
  }
}

export const getJSON = async (path, options) => (await request(path, options)).json();

export const postJSON = async (path, json, options = {}) =>
  (await request(path, { ...options, method: "POST", json })).json();

export const putJSON = async (path, json) => (await request(path, { method: "PUT", json })).json();

export const deleteRequest = (path) => request(path, { method: "DELETE" });

// ── paths, spelled as shared/contract/paths.py spells them ─────────────────────────────────

const COLLECTIONS = "/v1/collections";
const JOBS = "/v1/jobs";
const KITS = "/v1/kits";

export const paths = {
  collections: () => COLLECTIONS,
  collection: (name) => `${COLLECTIONS}/${encodeURIComponent(name)}`,
  assets: (name) => `${paths.collection(name)}/assets`,
  asset: (name, assetId) => `${paths.assets(name)}/${assetId}`,
  lineage: (name, assetId) => `${paths.asset(name, assetId)}/lineage`,
  versions: (name) => `${paths.collection(name)}/versions`,
  version: (name, number) => `${paths.versions(name)}/${number}`,
  reindex: (name) => `${paths.collection(name)}/reindex`,
  job: (jobId) => `${JOBS}/${jobId}`,
  clusters: (jobId) => `${paths.job(jobId)}/clusters`,
  results: (jobId) => `${paths.job(jobId)}/results`,
  thumbnail: (name, assetId, size) => `${paths.asset(name, assetId)}/thumbnail?size=${size}`,
  kits: () => KITS,
  kit: (ref) => `${KITS}/${encodeURIComponent(ref)}`,
  kitVersions: (name) => `${paths.kit(name)}/versions`,
};

export const listCollections = async () => (await getJSON(COLLECTIONS)).data;
export const getCollection = (name) => getJSON(paths.collection(name));

// ── the contract, read once ────────────────────────────────────────────────────────────────

export let meta = null;

export async function loadMeta() {
  meta = await getJSON("/v1/meta");
  return meta;
}

export const isFinished = (job) => meta.terminal_states.includes(job.state);
export const isCancellable = (job) => meta.cancellable_states.includes(job.state);

// A request body's JSON schema from the API's OpenAPI document, for the few bounds /v1/meta
// does not carry (a duplicates threshold is a fraction; meta's bounds are whole numbers).
let openapi = null;

export async function requestSchema(name) {
  openapi ??= getJSON("/openapi.json").catch((error) => {
    openapi = null;
    throw error;
  });
  return (await openapi).components.schemas[name];
}

// ── jobs ───────────────────────────────────────────────────────────────────────────────────

// Submits a job, holding the answer a few seconds: quick jobs come back finished.
export const submit = (kind, body, waitSeconds = 0) =>
  postJSON(`${JOBS}/${kind}` + (waitSeconds ? `?wait=${waitSeconds}` : ""), body);

export const cancel = (job) => request(`${paths.job(job.id)}/cancel`, { method: "POST" });

// Follows a job to its end through its server-sent events, calling onProgress with each
// fresh record. EventSource cannot send an Authorization header, so the stream is read with
// fetch(); a stream that drops is followed by long-polls.
export async function follow(job, onProgress = () => {}, signal) {
  if (isFinished(job)) return job;
  try {
    const response = await request(`${paths.job(job.id)}/events`, { signal });
    for await (const { event, data } of serverSentEvents(response)) {
      job = JSON.parse(data);
      if (event === "done") return job;
      onProgress(job);
    }
  } catch (error) {
    if (signal?.aborted) throw error;
  }
  while (!isFinished(job)) {
    job = await getJSON(`${paths.job(job.id)}?wait=30`, { signal });
    onProgress(job);
  }
  return job;
}

async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

// A finished job's results file (JSON Lines), one object per line.
export async function jobResults(job) {
  const text = await (await request(paths.results(job.id))).text();
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

// ── uploads ────────────────────────────────────────────────────────────────────────────────

export async function upload(file) {
  const form = new FormData();
  form.append("files", file, file.name);
  const { uploads } = await (await request("/v1/uploads", { method: "POST", body: form })).json();
  return uploads[0];
}

// ── images ─────────────────────────────────────────────────────────────────────────────────

// An <img> cannot send a header: with a key set, images are fetched with it and shown from
// object URLs (kept, since thumbnail and content URLs name immutable bytes; one fetch per
// URL, shared by every <img> that asks while it runs). Without a key the browser loads and
// caches them itself.
const objectUrls = new Map(); // url → Promise of its object URL
const KEEP_OBJECT_URLS = 500;

function objectUrl(url) {
  let src = objectUrls.get(url);
  if (!src) {
    src = request(url).then(async (response) => URL.createObjectURL(await response.blob()));
    // a failure is not kept: a later <img> asks again
    src.catch(() => objectUrls.get(url) === src && objectUrls.delete(url));
    objectUrls.set(url, src);
    if (objectUrls.size > KEEP_OBJECT_URLS) {
      const [oldest, old] = objectUrls.entries().next().value;
      objectUrls.delete(oldest);
      old.then((stale) => URL.revokeObjectURL(stale), () => {});
    }
  }
  return src;
}

export async function showImage(img, url) {
  img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  if (!apiKey.get()) {
    img.src = url;
    return;
  }
  try {
    img.src = await objectUrl(url);
  } catch (error) {
    img.classList.add("broken");
    img.title = String(error);
  }
}

// Opens image bytes in a new tab (with a key, through an object URL).
export async function openImage(url) {
  if (!apiKey.get()) {
    window.open(url, "_blank", "noopener");
    return;
  }
  const blob = await (await request(url)).blob();
  window.open(URL.createObjectURL(blob), "_blank");
}

// A returned thumbnail URL at another of the sizes the API offers.
export function resized(thumbnailUrl, size) {
  const url = new URL(thumbnailUrl, location.origin);
  url.searchParams.set("size", size);
  return url.pathname + url.search;
}
