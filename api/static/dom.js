// Small DOM helpers shared by the pages: element building, tiles, status lines, formatting.

import { meta, resized, showImage } from "./api.js";

// h("button", {class: "primary", onclick: fn}, "Save") → <button class="primary">Save</button>
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// What Search and Library show before anything was ingested.
export const ingestFirst = () =>
  h("p", {}, "No collections yet: ", h("a", { href: "#/ingest" }, "ingest some images"), " first.");

// A status line that screen readers announce; kind "error" shows it as an error.
export function say(el, text, kind = "") {
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
  el.hidden = !text;
}

// A thumbnail tile: the image opens the asset; `extra` goes under the caption.
export function tile({ thumbnailUrl, title, caption = null, onOpen, extra = [] }) {
  const img = h("img", { alt: "", width: 256, height: 256, decoding: "async" });
  showImage(img, thumbnailUrl);
  return h(
    "li",
    { class: "tile" },
    h("button", { type: "button", class: "thumb", onclick: onOpen, "aria-label": `Open ${title}` }, img),
    h("span", { class: "name", title }, title),
    caption || extra.length ? h("div", { class: "meta" }, caption, extra) : null,
  );
}

// A small thumbnail for chips: the smallest size the API makes.
export function smallThumb(thumbnailUrl) {
  const img = h("img", { alt: "", width: 40, height: 40 });
  showImage(img, resized(thumbnailUrl, Math.min(...meta.thumbnail_sizes)));
  return img;
}

export const score = (value) => h("span", { class: "score", title: "similarity" }, value.toFixed(3));

export function option(value, label = value, selected = false) {
  return h("option", { value, selected }, label);
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

export function when(epochSeconds) {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

export function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ?? Date.now() / 1000;
  const s = Math.max(0, end - job.started_at);
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// Ids are 64 hex digits: short enough to read, the whole one in the title.
export const shortId = (id) => h("code", { title: id }, id.slice(0, 12) + "…");

// A collection <select> filled from GET /v1/collections.
export function collectionSelect(collections, selected, attrs = {}) {
  return h(
    "select",
    attrs,
    collections.map((c) => option(c.name, `${c.name} (${c.count ?? "?"})`, c.name === selected)),
  );
}

export function progressText(progress) {
  const done = progress.succeeded + progress.failed;
  if (!progress.total && !done) return "not started";
  const failed = progress.failed ? `, ${progress.failed} failed` : "";
  return `${done} of ${progress.total || "?"} done${failed}`;
}

// A place to drop image files, with a file picker for keyboards and phones.
export function dropZone({ id, text, multiple = false, onFiles }) {
  const input = h("input", {
    type: "file",
    id,
    accept: "image/*",
    multiple,
    class: "visually-hidden",
    onchange: () => {
      onFiles([...input.files]);
      input.value = "";
    },
  });
  const zone = h(
    "div",
    { class: "drop" },
    input,
    h("label", { for: id, class: "button" }, multiple ? "Choose files" : "Choose an image"),
    h("span", {}, text),
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = [...event.dataTransfer.files];
    if (files.length) onFiles(multiple ? files : files.slice(0, 1));
  });
  return zone;
}

// A progress bar with its label and a line of text beside it (ingest, re-index, duplicates).
export function meter(id, label) {
  const progress = h("progress", { id, class: label.toLowerCase(), max: 1, value: 0, "aria-labelledby": `${id}-label` });
  const text = h("span", { class: "muted" });
  const row = h("div", { class: "meter" }, h("span", { id: `${id}-label` }, label), progress, text);
  const show = (job) => {
    const { total, succeeded, failed } = job.progress;
    progress.max = Math.max(total, 1);
    progress.value = succeeded + failed;
    text.textContent = progressText(job.progress);
  };
  return { row, progress, text, show };
}

// A model as people read it: a checkpoint path by its file name (the whole path in a title).
export function modelName(model) {
  // a checkpoint path by its file; an open_clip name without its prefix
  if (model.startsWith("/") || model.includes("\\")) return model.split(/[\\/]/).pop();
  return model.replace(/^open_clip:/, "");
}

// Asks before something that cannot be undone; resolves true once confirmed. Cancel has the
// focus, so Enter or Escape pressed without reading does nothing.
export function confirmAction({ title, text, action }) {
  const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h("form", { method: "dialog", class: "stack" },
      h("h2", { id: "confirm-title" }, title),
      h("div", { id: "confirm-text" }, [text].flat().map((line) => h("p", {}, line))),
      h("div", { class: "row end" },
        h("button", { value: "cancel", autofocus: true }, "Cancel"),
        h("button", { value: "confirm", class: "danger solid" }, action))));
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    }, { once: true });
    dialog.showModal();
  });
}

// Marks a region busy while `work` runs (and until the last of overlapping runs ends): screen
// readers wait for it, and so do the browser tests before they look at the page.
const busyRuns = new WeakMap();

export async function busyWhile(el, work) {
  busyRuns.set(el, (busyRuns.get(el) ?? 0) + 1);
  el.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    const left = busyRuns.get(el) - 1;
    busyRuns.set(el, left);
    if (!left) el.removeAttribute("aria-busy");
  }
}
