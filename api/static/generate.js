// A prompt plus references (picked hits, or the top hits of a query) to Gemini; the outputs
// beside their references, each one savable into the collection.

import { follow, getJSON, listCollections, meta, openImage, paths, request, showImage, submit, upload } from "./api.js";
import { h, option, say, smallThumb, tile } from "./dom.js";
import { picks, unpick } from "./picks.js";
import { openAsset } from "./record.js";

export async function mount(root) {
  const collections = await listCollections();
  const picked = picks();
  root.append(h("h1", {}, "Generate"));
  if (!meta.generator_configured) {
    root.append(h("p", { class: "status warn" },
      "This server has no Gemini key (ASSETRAG_GEMINI_API_KEY), so it cannot generate images."));
  }

  const prompt = h("textarea", { id: "gen-prompt", name: "prompt", required: true, rows: 3,
    maxlength: meta.max_prompt_chars, placeholder: "the shawl on a model, golden hour, magazine cover" });
  const collection = h("input", { id: "gen-collection", name: "collection", required: true,
    pattern: meta.collection_name_pattern, list: "gen-collections", autocomplete: "off",
    value: picked.collection || collections[0]?.name || "" });
  const refQuery = h("input", { id: "gen-ref-query", name: "reference_query", type: "search",
    maxlength: meta.max_query_chars, placeholder: "red silk shawl" });
  const refTopK = h("input", { id: "gen-ref-top-k", name: "reference_top_k", type: "number",
    min: meta.reference_top_k.min, max: meta.reference_top_k.max, value: meta.reference_top_k.default });
  const count = h("select", { id: "gen-count", name: "count" },
    range(meta.generate_count.min, meta.generate_count.max).map((n) =>
      option(String(n), String(n), n === meta.generate_count.default)));
  const aspect = h("select", { id: "gen-aspect", name: "aspect_ratio" },
    option("", "model default"), meta.aspect_ratios.map((r) => option(r)));
  const size = h("select", { id: "gen-size", name: "image_size" },
    option("", "model default"), meta.image_sizes.map((s) => option(s)));
  const save = h("input", { id: "gen-save", name: "save_to_collection", type: "checkbox" });
  const status = h("p", { class: "status", role: "status" });
  const output = h("section", { class: "output", "aria-label": "Result" });

  const mode = (value, label, checked) =>
    h("label", { class: "radio" }, h("input", { type: "radio", name: "refs", value, checked }), label);
  const pickStrip = h("ul", { class: "chips" });
  function showPicks() {
    const { assets } = picks();
    pickStrip.replaceChildren(...assets.map((a) => h("li", {}, h("span", { class: "chip" },
      smallThumb(a.thumbnail_url), a.filename,
      h("button", { type: "button", class: "quiet", "aria-label": `Remove ${a.filename}`,
        onclick: () => { unpick(a.asset_id); showPicks(); } }, "×")))));
    if (!assets.length) pickStrip.append(h("li", { class: "muted" }, "None yet: tick “Reference” on hits in ",
      h("a", { href: "#/search" }, "Search"), "."));
  }

  const form = h("form", { class: "stack generate-form", onsubmit: (event) => {
    event.preventDefault();
    if (form.reportValidity()) run().catch((error) => say(status, String(error), "error"));
  } },
  h("div", { class: "field" }, h("label", { for: "gen-prompt" }, "Prompt"), prompt),
  h("div", { class: "field" }, h("label", { for: "gen-collection" }, "Collection"), collection,
    h("datalist", { id: "gen-collections" }, collections.map((c) => option(c.name)))),
  h("fieldset", {}, h("legend", {}, "References"),
    mode("picked", "Picked hits", picked.assets.length > 0), pickStrip,
    mode("query", "Top hits of a search"),
    h("div", { class: "row indent" },
      h("div", { class: "field grow" }, h("label", { for: "gen-ref-query" }, "Search for"), refQuery),
      h("div", { class: "field narrow" }, h("label", { for: "gen-ref-top-k" }, "How many"), refTopK)),
    mode("none", "No references", picked.assets.length === 0)),
  h("div", { class: "row" },
    h("div", { class: "field" }, h("label", { for: "gen-count" }, "Images"), count),
    h("div", { class: "field" }, h("label", { for: "gen-aspect" }, "Aspect ratio"), aspect),
    h("div", { class: "field" }, h("label", { for: "gen-size" }, "Size"), size)),
  h("label", { class: "check" }, save, " Save the outputs to the collection, with their lineage"),
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary",
    disabled: !meta.generator_configured }, "Generate")));
  root.append(form, status, output);
  showPicks();
  refQuery.addEventListener("input", () => { form.elements.refs.value = "query"; });

  function body() {
    const spec = { prompt: prompt.value, collection: collection.value, count: Number(count.value),
      save_to_collection: save.checked };
    if (aspect.value) spec.aspect_ratio = aspect.value;
    if (size.value) spec.image_size = size.value;
    const refs = form.elements.refs.value;
    if (refs === "picked") {
      const { collection: from, assets } = picks();
      if (!assets.length) throw new Error("Pick some hits in Search first, or choose another kind of reference.");
      if (from !== collection.value) throw new Error(`The picked hits are from ${from}: generate in that collection.`);
      spec.references = { asset_ids: assets.map((a) => a.asset_id) };
    } else if (refs === "query") {
      if (!refQuery.value.trim()) throw new Error("Say what to search for.");
      spec.references = { query: refQuery.value.trim(), top_k: Number(refTopK.value) };
    }
    return spec;
  }

  async function run() {
    const spec = body();
    output.replaceChildren();
    say(status, "Generating…");
    const job = await follow(await submit("generate", spec));
    output.dataset.state = job.state;
    if (job.state !== "completed") {
      say(status, `The generation ${job.state}${job.error ? `: ${job.error.code}: ${job.error.message}` : ""}`, "error");
      return;
    }
    const failed = job.errors.map((e) => `${e.source}: ${e.code}: ${e.message}`).join("; ");
    say(status, failed ? `Some variants failed: ${failed}` : "", failed ? "warn" : "");
    await showResult(output, spec, job);
  }
}

async function showResult(output, spec, job) {
  const { collection } = spec;
  const references = await Promise.all(job.result.references.map((id) =>
    getJSON(paths.asset(collection, id))));
  output.replaceChildren(
    h("div", { class: "column" }, h("h2", {}, "References"),
      references.length
        ? h("ul", { class: "grid small" }, references.map((a) => tile({
          thumbnailUrl: a.thumbnail_url, title: a.filename || a.asset_id,
          onOpen: () => openAsset(collection, a.asset_id) })))
        : h("p", { class: "muted" }, "None: the prompt alone.")),
    h("div", { class: "column wide" }, h("h2", {}, `Outputs from ${job.result.model}`),
      h("ul", { class: "outputs" }, job.result.images.map((image, n) => outputTile(spec, job, image, n))),
      job.result.text ? h("p", { class: "muted" }, "The model said: ", job.result.text) : null,
      usageLine(job.result.usage)),
  );
}

// What the job asked of Gemini and what it cost (a crash's re-sent calls included).
function usageLine(usage) {
  if (!usage) return null;
  const cost = usage.estimated_cost_usd == null ? "" : `, about $${usage.estimated_cost_usd.toFixed(3)}`;
  return h("p", { class: "muted usage" },
    `Gemini: ${usage.calls} call(s), ${usage.images_returned} image(s) returned, ` +
    `${usage.images_billed} billed${cost}`);
}

function outputTile(spec, job, image, n) {
  const img = h("img", { alt: `Output ${n + 1} for “${spec.prompt}”`, width: image.width, height: image.height });
  showImage(img, image.content_url);
  const actions = h("div", { class: "row" },
    h("button", { type: "button", onclick: () => openImage(image.content_url) }, "Full size"));
  const saving = h("span", { class: "row" });
  actions.append(saving);
  const item = h("li", { class: "output-tile" }, h("figure", {}, img,
    h("figcaption", { class: "muted" }, `${image.width}×${image.height} ${image.mime_type}`)), actions);
  const status = h("p", { class: "status", role: "status", hidden: true });
  const saved = (assetId) => saving.replaceChildren(
    h("button", { type: "button", onclick: () => openAsset(spec.collection, assetId) }, "Open record"),
    h("span", { class: "ok" }, `Saved to ${spec.collection}`));
  if (image.asset_id) saved(image.asset_id);
  else {
    saving.append(h("button", { type: "button", class: "primary", onclick: async (event) => {
      event.target.disabled = true;
      say(status, "Saving…");
      try {
        saved(await saveOutput(spec, job, image, n));
        say(status, "");
      } catch (error) {
        event.target.disabled = false;
        say(status, String(error), "error");
      }
    } }, "Save to collection"));
  }
  item.append(status);
  return item;
}

// What `save_to_collection` does inside the job, done afterwards through the public API:
// the bytes go up as an upload and are embedded with the same lineage metadata.
async function saveOutput(spec, job, image, n) {
  const blob = await (await request(image.content_url)).blob();
  const ext = image.mime_type.split("/").pop();
  const file = new File([blob], `generated-${job.id}-${n}.${ext}`, { type: image.mime_type });
  const { upload_id } = await upload(file);
  const lineage = { prompt: spec.prompt, references: job.result.references, model: job.result.model, job_id: job.id };
  const embed = await follow(await submit("embed", {
    collection: spec.collection,
    items: [{ upload_id, metadata: { generated: true, lineage } }],
  }, 10));
  const assetId = embed.result?.asset_ids?.[0];
  if (!assetId) throw new Error(embed.errors[0]?.message ?? embed.error?.message ?? `embed ${embed.state}`);
  return assetId;
}

function range(low, high) {
  return Array.from({ length: high - low + 1 }, (_, i) => low + i);
}
