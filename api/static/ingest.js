// Drop many files into a collection: each file is uploaded on its own (the API refuses an
// upload request whole for one bad file), then one embed job takes them all and its
// server-sent events drive the progress bar.

import { follow, listCollections, meta, paths, postJSON, submit, upload } from "./api.js";
import { bytes, dropZone, h, meter, option, say } from "./dom.js";

const UPLOADS_IN_FLIGHT = 4;
let runs = 0; // numbers each run's element ids

export async function mount(root, params) {
  const collections = await listCollections();
  const name = h("input", {
    id: "ingest-collection",
    name: "collection",
    required: true,
    pattern: meta.collection_name_pattern,
    list: "ingest-collections",
    autocomplete: "off",
    value: params.get("collection") || collections[0]?.name || "",
    "aria-describedby": "ingest-collection-help",
  });
  // A new collection is made with the model picked here (GET /v1/meta's catalogue); an
  // existing one keeps its own, shown beside it.
  const known = new Map(collections.map((c) => [c.name, c]));
  const model = h("select", { id: "ingest-model", name: "model" },
    (meta.model_catalog ?? []).map((m) => {
      const choice = option(m.name, `${m.name.replace(/^open_clip:/, "")}${m.dimension ? `, ${m.dimension}-d` : ""} (${m.languages})`);
      choice.title = m.note;
      choice.selected = m.default;
      return choice;
    }));
  const modelNote = h("small", { id: "ingest-model-help", class: "muted" });
  const modelField = h("div", { class: "field" },
    h("label", { for: "ingest-model" }, "Model (of a new one)"), model, modelNote);
  function showModel() {
    const existing = known.get(name.value);
    model.disabled = Boolean(existing);
    if (existing) model.value = existing.model;
    const picked = (meta.model_catalog ?? []).find((m) => m.name === model.value);
    modelNote.textContent = existing
      ? `${existing.name} holds ${existing.model} vectors; re-index it to move it to another model.`
      : picked?.note ?? "";
  }
  name.addEventListener("input", showModel);
  model.addEventListener("change", showModel);
  const history = h("div", { class: "runs" });
  let pending = [];
  const start = h("button", { type: "submit", class: "primary", hidden: true }, "");

  function queue(files) {
    pending = files;
    start.hidden = false;
    start.textContent = `Ingest ${files.length} ${files.length === 1 ? "file" : "files"}`;
    form.requestSubmit();
  }

  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: (event) => {
        event.preventDefault();
        if (!pending.length || !form.reportValidity()) return;
        const files = pending;
        pending = [];
        start.hidden = true;
        const view = h("section", { class: "run card" });
        history.prepend(view);
        ingest(files, name.value, known.has(name.value) ? null : model.value, view);
        if (!known.has(name.value)) known.set(name.value, { name: name.value, model: model.value });
        showModel();
      },
    },
    h("div", { class: "field" },
      h("label", { for: "ingest-collection" }, "Collection"),
      name,
      h("datalist", { id: "ingest-collections" }, collections.map((c) => option(c.name))),
      h("small", { id: "ingest-collection-help", class: "muted" },
        "An existing collection, or a new name (letters, digits and _, starting with a letter).")),
    modelField,
    dropZone({ id: "ingest-files", text: "or drop images here, as many as you like", multiple: true, onFiles: queue }),
    start,
  );
  root.append(h("h1", {}, "Ingest"), form, history);
  showModel();
}

async function ingest(files, collection, model, view) {
  const refused = []; // {name, code, message}
  const uploaded = []; // {name, upload_id}
  const status = h("p", { class: "status", role: "status" });
  const run = ++runs;
  const up = meter(`upload-${run}`, "Upload");
  const embed = meter(`embed-${run}`, "Embed");
  view.dataset.state = "uploading";
  view.append(h("h2", {}, `${files.length} ${files.length === 1 ? "file" : "files"} into ${collection}`),
    up.row, embed.row, status);

  up.progress.max = files.length;
  let sent = 0;
  await eachLimited(files, UPLOADS_IN_FLIGHT, async (file) => {
    if (file.size > meta.max_upload_bytes) {
      refused.push({ name: file.name, code: "file_too_large", message: `${bytes(file.size)} is over the ${bytes(meta.max_upload_bytes)} limit` });
    } else {
      try {
        uploaded.push({ name: file.name, upload_id: (await upload(file)).upload_id });
      } catch (error) {
        refused.push({ name: file.name, code: error.code ?? "error", message: error.message });
      }
    }
    up.progress.value = ++sent;
    up.text.textContent = `${sent} of ${files.length} sent`;
  });

  let job = null;
  if (uploaded.length) {
    view.dataset.state = "embedding";
    try {
      if (model) await createCollection(collection, model);
      job = await submit("embed", { collection, items: uploaded.map((u) => ({ upload_id: u.upload_id })) });
      embed.show(job);
      job = await follow(job, embed.show);
      embed.show(job);
    } catch (error) {
      say(status, String(error), "error");
    }
  }
  const failed = [
    ...refused.map((r) => ({ ...r, stage: "upload" })),
    ...(job?.errors ?? []).map((e) => ({ name: uploaded[e.index]?.name ?? e.source, code: e.code, message: e.message, stage: "embed" })),
  ];
  view.dataset.state = job?.state ?? "failed";
  const stored = job?.progress.succeeded ?? 0;
  if (job?.error) say(status, `The job failed: ${job.error.code}: ${job.error.message}`, "error");
  else if (job) say(status, `${stored} stored, ${failed.length} failed (${job.state}).`, failed.length ? "warn" : "ok");
  else if (!status.textContent) say(status, "No file could be uploaded.", "error");
  if (stored) view.append(h("p", {}, h("a", { href: `#/library?collection=${encodeURIComponent(collection)}` }, `See ${collection} in the library`)));
  if (failed.length) view.append(errorTable(failed));
}

async function createCollection(name, model) {
  try {
    await postJSON(paths.collections(), { name, model });
  } catch (error) {
    if (error.code !== "collection_exists") throw error; // made meanwhile: embed into it
  }
}

function errorTable(rows) {
  return h("table", { class: "errors" },
    h("caption", {}, "Files that were not stored"),
    h("thead", {}, h("tr", {}, ["File", "Stage", "Code", "Why"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", {}, r.name), h("td", {}, r.stage), h("td", {}, h("code", {}, r.code)), h("td", {}, r.message)))));
}

async function eachLimited(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
