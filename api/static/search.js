// Search a collection by a sentence, an example image or a stored asset ("find similar").

import { follow, getJSON, listCollections, meta, submit, upload } from "./api.js";
import { collectionSelect, dropZone, h, ingestFirst, option, say, score, tile } from "./dom.js";
import { isPicked, pick, picks, unpick } from "./picks.js";
import { openAsset } from "./record.js";

// The last answer, shown again when the user comes back to this page.
let last = null;

export async function mount(root, params) {
  const collections = await listCollections();
  root.append(h("h1", {}, "Search"));
  if (!collections.length) {
    root.append(ingestFirst());
    return;
  }
  const like = params.get("like");
  const chosen = params.get("collection") || last?.collection || collections[0].name;
  let image = null; // a File to search with
  let imageUpload = null; // its upload id, once sent
  // "find similar" names an asset: its record gives the label
  let similar = like
    ? await getJSON(`/v1/collections/${encodeURIComponent(chosen)}/assets/${like}`)
      .catch(() => ({ asset_id: like, filename: like.slice(0, 12) + "…" }))
    : null;

  const select = collectionSelect(collections, chosen, { id: "search-collection", name: "collection" });
  const text = h("input", {
    id: "search-text",
    type: "search",
    name: "text",
    maxlength: meta.max_query_chars,
    placeholder: "red silk shawl with gold trim",
    value: like ? "" : (last?.text ?? ""),
  });
  const topK = h("input", {
    id: "search-top-k",
    type: "number",
    name: "top_k",
    min: meta.top_k.min,
    max: meta.top_k.max,
    value: last?.topK ?? meta.top_k.default,
  });
  // keyword and hybrid search need a collection built with BM25 (GET /v1/collections says)
  const mode = h(
    "select",
    { id: "search-mode", name: "mode" },
    meta.search_modes.map((m) => option(m, m, m === (last?.mode ?? "vector"))),
  );
  function showModes() {
    const found = collections.find((c) => c.name === select.value);
    for (const choice of mode.options) {
      choice.disabled = choice.value !== "vector" && !found?.keyword_search;
    }
    if (mode.selectedOptions[0]?.disabled) mode.value = "vector";
  }
  select.addEventListener("change", showModes);
  const example = h("div", { class: "example", hidden: true });
  const status = h("p", { class: "status", role: "status" });
  const results = h("section", { class: "results", "aria-labelledby": "results-title" });
  const picked = h("p", { class: "picked", role: "status" });

  function showExample() {
    const what = image ? `Example image: ${image.name}` : similar ? `Similar to ${similar.filename}` : "";
    example.hidden = !what;
    text.disabled = Boolean(what);
    mode.disabled = Boolean(what);
    example.replaceChildren(
      h("span", {}, what),
      h("button", { type: "button", class: "quiet", onclick: () => {
        image = null;
        similar = null;
        showExample();
        text.focus();
      } }, image ? "Remove image" : "Search by text instead"),
    );
  }

  function showPicked() {
    const { assets } = picks();
    picked.replaceChildren(
      assets.length ? `${assets.length} picked as references. ` : "",
      assets.length ? h("a", { href: "#/generate" }, "Generate with them") : "",
    );
  }

  function render({ collection, label, hits }) {
    const grid = h("ul", { class: "grid" }, hits.map((hit) => hitTile(collection, hit, showPicked)));
    results.replaceChildren(
      h("h2", { id: "results-title" }, `${hits.length} ${hits.length === 1 ? "hit" : "hits"} for ${label} in ${collection}`),
      grid,
    );
  }

  // Searches are numbered: only the latest one may show its answer or its error, and the
  // results stay marked busy until it has, so nothing (a person, a screenshot) takes the
  // previous answer still on screen for this one's.
  let searches = 0;

  async function run(mine) {
    const collection = select.value;
    let query;
    let label;
    say(status, "");
    if (image) {
      say(status, `Uploading ${image.name}…`);
      imageUpload ??= (await upload(image)).upload_id;
      query = { upload_id: imageUpload };
      label = `images like ${image.name}`;
    } else if (similar) {
      query = { asset_id: similar.asset_id };
      label = `images similar to ${similar.filename}`;
    } else if (text.value.trim()) {
      query = { text: text.value.trim() };
      if (mode.value !== "vector") query.mode = mode.value;
      label = `“${text.value.trim()}”`;
    } else {
      say(status, "Type a description or pick an example image.", "error");
      text.focus();
      return;
    }
    const asked = { text: text.value, topK: topK.value, mode: mode.value };
    say(status, "Searching…");
    const job = await follow(await submit("search", { collection, queries: [query], top_k: Number(topK.value) }, 10));
    if (mine !== searches) return;
    if (job.state !== "completed") {
      say(status, `The search ${job.state}: ${job.error?.message ?? ""}`, "error");
      return;
    }
    say(status, "");
    last = { collection, label, hits: job.result.results[0], ...asked };
    render(last);
  }

  async function search() {
    const mine = ++searches;
    results.setAttribute("aria-busy", "true");
    try {
      await run(mine);
    } catch (error) {
      if (mine === searches) say(status, String(error), "error");
    } finally {
      if (mine === searches) results.removeAttribute("aria-busy");
    }
  }

  const form = h(
    "form",
    { class: "search-form", onsubmit: (event) => {
      event.preventDefault();
      if (form.reportValidity()) search();
    } },
    h("div", { class: "field" }, h("label", { for: "search-collection" }, "Collection"), select),
    h("div", { class: "field grow" }, h("label", { for: "search-text" }, "Describe what you are looking for"), text),
    h("div", { class: "field narrow" }, h("label", { for: "search-mode" }, "Match"), mode),
    h("div", { class: "field narrow" }, h("label", { for: "search-top-k" }, "Results"), topK),
    h("button", { type: "submit", class: "primary" }, "Search"),
    dropZone({
      id: "search-image",
      text: "or drop an example image here",
      onFiles: ([file]) => {
        image = file;
        imageUpload = null;
        similar = null;
        showExample();
        form.requestSubmit();
      },
    }),
    example,
  );
  root.append(form, status, picked, results);
  showPicked();
  showModes();
  showExample();

  if (similar) {
    form.requestSubmit();
  } else if (last && last.collection === select.value) {
    render(last);
  }
}

function hitTile(collection, hit, onPick) {
  const title = hit.filename || hit.asset_id;
  const checkbox = h("input", {
    type: "checkbox",
    checked: isPicked(hit.asset_id),
    "aria-label": `Use ${title} as a reference`,
    onchange: () => {
      if (checkbox.checked) pick(collection, hit);
      else unpick(hit.asset_id);
      onPick();
    },
  });
  return tile({
    thumbnailUrl: hit.thumbnail_url,
    title,
    caption: [score(hit.score), foundBy(hit)],
    onOpen: () => openAsset(collection, hit.asset_id),
    extra: [h("label", { class: "pick" }, checkbox, "Reference")],
  });
}

// Which searches found a hit, where a search asked for more than one kind.
function foundBy(hit) {
  if (hit.found_by.length === 1 && hit.found_by[0] === "vector") return "";
  return h("span", { class: "found-by" }, `found by ${hit.found_by.join(" + ")}`);
}
