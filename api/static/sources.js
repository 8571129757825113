// The sources a generation draws on, as a list the person builds in order: dropped photos
// (uploads), searches whose hits they tick (or whose top hits are taken at run time), and
// hits picked in Search. Each source has a role and a label; the list becomes the request's
// `references` (shared/contract/references.py). Roles and their meaning come from the API's
// own schema, never from here.

import { follow, meta, requestSchema, submit, upload } from "./api.js";
import { collectionSelect, dropZone, h, option, say, score, smallThumb, tile } from "./dom.js";
import { clearPicks, picks } from "./picks.js";
import { openAsset } from "./record.js";

const KIND_NAMES = { upload: "Photo", assets: "Picked hits", query: "Search" };

export async function sourceList({ collections, collection }) {
  const roleSchema = (await requestSchema("ReferenceSource")).properties.role;
  const list = h("ol", { class: "sources", "aria-label": "Sources, in order" });
  const status = h("p", { class: "status", role: "status", hidden: true });
  let sources = [];
  let next = 0;

  function add(source) {
    sources.push({ id: ++next, role: roleSchema.default, label: "", ...source });
    show();
  }

  function move(source, by) {
    const at = sources.indexOf(source);
    const to = at + by;
    if (to < 0 || to >= sources.length) return;
    [sources[at], sources[to]] = [sources[to], sources[at]];
    show();
  }

  function remove(source) {
    sources = sources.filter((s) => s !== source);
    if (source.kind === "assets" && source.picked) clearPicks();
    show();
  }

  function show() {
    list.replaceChildren(...sources.map((source, n) => card(source, n)));
    if (!sources.length) list.append(h("li", { class: "muted empty" }, "No sources: the prompt alone."));
  }

  function card(source, n) {
    const title = `${n + 1}. ${KIND_NAMES[source.kind]}`;
    const idPart = `src-${source.id}`;
    const role = h("select", { id: `${idPart}-role`, onchange: () => {
      source.role = role.value;
      item.dataset.role = role.value;
    } }, roleSchema.enum.map((r) => option(r, r, r === source.role)));
    const label = h("input", { id: `${idPart}-label`, value: source.label, maxlength: 200,
      placeholder: source.kind === "upload" ? "the player" : "the red shawl",
      oninput: () => { source.label = label.value; } });
    const item = h("li", { class: "source card", "data-kind": source.kind, "data-role": source.role },
      h("div", { class: "row spread" }, h("h3", {}, title),
        h("span", { class: "row" },
          h("button", { type: "button", class: "quiet", "aria-label": `Move source ${n + 1} up`,
            disabled: n === 0, onclick: () => move(source, -1) }, "↑"),
          h("button", { type: "button", class: "quiet", "aria-label": `Move source ${n + 1} down`,
            disabled: n === sources.length - 1, onclick: () => move(source, 1) }, "↓"),
          h("button", { type: "button", class: "quiet", "aria-label": `Remove source ${n + 1}`,
            onclick: () => remove(source) }, "Remove"))),
      body(source),
      h("div", { class: "row" },
        h("div", { class: "field narrow-ish" }, h("label", { for: `${idPart}-role` }, "Role"), role),
        h("div", { class: "field grow" }, h("label", { for: `${idPart}-label` }, "Label"), label)));
    return item;
  }

  function body(source) {
    if (source.kind === "upload") {
      return h("div", { class: "row" }, h("img", { class: "photo", src: source.preview, alt: `The photo ${source.filename}` }),
        h("span", { class: "muted" }, source.filename));
    }
    if (source.kind === "assets") {
      return h("ul", { class: "chips" }, source.assets.map((a) =>
        h("li", {}, h("span", { class: "chip" }, smallThumb(a.thumbnail_url), a.filename || a.asset_id))));
    }
    return searchBody(source);
  }

  // A search: run it here, then tick the hits to use; with none ticked, the top hits are
  // taken when the generation runs.
  function searchBody(source) {
    const idPart = `src-${source.id}`;
    const from = collectionSelect(collections, source.collection, { id: `${idPart}-collection` });
    const text = h("input", { id: `${idPart}-query`, type: "search", value: source.query ?? "",
      maxlength: meta.max_query_chars, placeholder: "red silk shawl" });
    const topK = h("input", { id: `${idPart}-top-k`, type: "number", value: source.topK,
      min: meta.reference_top_k.min, max: meta.reference_top_k.max });
    const hits = h("ul", { class: "grid small hits" });
    const note = h("p", { class: "muted" });
    const found = h("p", { class: "status", role: "status", hidden: true });
    const describe = () => {
      const ticked = source.hits?.filter((hit) => source.ticked.has(hit.asset_id)).length ?? 0;
      note.textContent = ticked
        ? `${ticked} ticked hit(s) will be used.`
        : `None ticked: the top ${source.topK} hit(s) are taken when the generation runs.`;
    };
    const showHits = () => {
      hits.replaceChildren(...(source.hits ?? []).map((hit) => hitTile(source, hit, describe)));
      describe();
    };
    const go = async () => {
      source.query = text.value.trim();
      source.collection = from.value;
      source.topK = Number(topK.value);
      if (!source.label) source.label = source.query;
      if (!source.query) return say(found, "Say what to search for.", "error");
      say(found, "Searching…");
      hits.setAttribute("aria-busy", "true");
      try {
        const job = await follow(await submit("search",
          { collection: source.collection, queries: [{ text: source.query }], top_k: source.topK }, 10));
        if (job.state !== "completed") throw new Error(`The search ${job.state}: ${job.error?.message ?? ""}`);
        source.hits = job.result.results[0];
        source.ticked = new Set();
        say(found, source.hits.length ? "" : "Nothing found.", source.hits.length ? "" : "warn");
        const labelInput = document.getElementById(`${idPart}-label`);
        if (labelInput && !labelInput.value) labelInput.value = source.label;
        showHits();
      } catch (error) {
        say(found, String(error), "error");
      } finally {
        hits.removeAttribute("aria-busy");
      }
    };
    text.addEventListener("input", () => { source.query = text.value.trim(); });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); go(); }
    });
    topK.addEventListener("input", () => { source.topK = Number(topK.value); describe(); });
    from.addEventListener("change", () => { source.collection = from.value; });
    showHits();
    return h("div", { class: "stack tight" },
      h("div", { class: "row" },
        h("div", { class: "field grow" }, h("label", { for: `${idPart}-query` }, "Search for"), text),
        h("div", { class: "field" }, h("label", { for: `${idPart}-collection` }, "In"), from),
        h("div", { class: "field narrow" }, h("label", { for: `${idPart}-top-k` }, "How many"), topK),
        h("button", { type: "button", onclick: go }, "Find hits")),
      found, hits, note);
  }

  function hitTile(source, hit, onTick) {
    const title = hit.filename || hit.asset_id;
    const box = h("input", { type: "checkbox", checked: source.ticked.has(hit.asset_id),
      "aria-label": `Use ${title}`, onchange: () => {
        if (box.checked) source.ticked.add(hit.asset_id);
        else source.ticked.delete(hit.asset_id);
        onTick();
      } });
    return tile({ thumbnailUrl: hit.thumbnail_url, title, caption: score(hit.score),
      onOpen: () => openAsset(source.collection, hit.asset_id),
      extra: [h("label", { class: "pick" }, box, "Use")] });
  }

  async function addPhotos(files) {
    say(status, `Uploading ${files.map((f) => f.name).join(", ")}…`);
    try {
      for (const file of files) {
        const { upload_id } = await upload(file);
        const first = !sources.some((s) => s.kind === "upload");
        add({ kind: "upload", upload_id, filename: file.name, preview: URL.createObjectURL(file),
          role: first && roleSchema.enum.includes("subject") ? "subject" : roleSchema.default });
      }
      say(status, "");
    } catch (error) {
      say(status, `${files.length > 1 ? "An upload" : "The upload"} was refused: ${error}`, "error");
    }
  }

  const picked = picks();
  if (picked.assets.length) {
    add({ kind: "assets", picked: true, collection: picked.collection, assets: picked.assets });
  } else {
    show();
  }

  const element = h("fieldset", { class: "compose" }, h("legend", {}, "Sources"),
    h("p", { class: "muted help" }, "Each source's images go to the model with their role and label. ",
      roleSchema.description ? `Roles: ${roleSchema.description}.` : ""),
    list,
    dropZone({ id: "gen-photo", multiple: true, text: "Drop a photo here: your subject, or an image to use.",
      onFiles: addPhotos }),
    status,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => {
        add({ kind: "query", collection: collection(), topK: meta.reference_top_k.default, ticked: new Set() });
        list.lastElementChild.querySelector('input[type="search"]').focus();
      } }, "Add a search"),
      h("a", { href: "#/search", class: "button" }, "Pick hits in Search")));

  // The request's `references`, in the order listed; a search with ticked hits sends them.
  function references() {
    return sources.map((s) => {
      const common = { role: s.role, ...(s.label.trim() ? { label: s.label.trim() } : {}) };
      if (s.kind === "upload") return { upload_id: s.upload_id, ...common };
      if (s.kind === "assets") {
        return { asset_ids: s.assets.map((a) => a.asset_id), collection: s.collection, ...common };
      }
      if (!s.query) throw new Error(`Source ${sources.indexOf(s) + 1}: say what to search for.`);
      const ticked = (s.hits ?? []).filter((hit) => s.ticked.has(hit.asset_id));
      if (ticked.length) return { asset_ids: ticked.map((hit) => hit.asset_id), collection: s.collection, ...common };
      return { query: s.query, top_k: s.topK, collection: s.collection, ...common };
    });
  }

  return { element, references };
}
