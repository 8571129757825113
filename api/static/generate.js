// Generate (compose): a prompt plus an ordered list of sources (a dropped photo, searches
// whose hits are ticked, hits picked in Search), each with a role and label, in one or more
// formats; the outputs with their lineage, each one editable or savable (outputs.js).

import { getJSON, listCollections, meta, paths, requestSchema } from "./api.js";
import { h, option, say } from "./dom.js";
import { runGeneration } from "./outputs.js";
import { picks } from "./picks.js";
import { sourceList } from "./sources.js";

export const title = "Generate";

export async function mount(root) {
  const collections = await listCollections();
  const { data: kits } = await getJSON(paths.kits());
  const formats = (await requestSchema("GenerateRequest")).properties.aspect_ratios;
  const picked = picks();
  root.append(h("h1", {}, "Generate"));
  if (!meta.generator_configured) {
    root.append(h("p", { class: "status warn" },
      "This server has no Gemini key (ASSETRAG_GEMINI_API_KEY), so it cannot generate images."));
  }

  const prompt = h("textarea", { id: "gen-prompt", name: "prompt", required: true, rows: 3,
    maxlength: meta.max_prompt_chars, placeholder: "the player wearing the shawl and the watch, on a beach at golden hour" });
  const collection = h("input", { id: "gen-collection", name: "collection", required: true,
    pattern: meta.collection_name_pattern, list: "gen-collections", autocomplete: "off",
    value: picked.collection || collections[0]?.name || "" });
  const sources = await sourceList({ collections, collection: () => collection.value });
  const count = h("select", { id: "gen-count", name: "count" },
    range(meta.generate_count.min, meta.generate_count.max).map((n) =>
      option(String(n), String(n), n === meta.generate_count.default)));
  const size = h("select", { id: "gen-size", name: "image_size" },
    option("", "model default"), meta.image_sizes.map((s) => option(s)));
  const kit = h("select", { id: "gen-kit", name: "kit" }, option("", "none"),
    kits.map((k) => option(k.name, `${k.name} (version ${k.version})`)));
  const save = h("input", { id: "gen-save", name: "save_to_collection", type: "checkbox" });
  const status = h("p", { class: "status", role: "status" });
  const outputs = h("section", { class: "results", "aria-label": "Results" });

  // Formats: one ratio, or up to the schema's maxItems of them (the same scene in each).
  const ratioBoxes = meta.aspect_ratios.map((r) => h("input", { type: "checkbox", name: "aspect_ratios", value: r,
    id: `gen-ratio-${r.replace(":", "x")}`, onchange: limitFormats }));
  function limitFormats() {
    const full = ratioBoxes.filter((b) => b.checked).length >= (formats.maxItems ?? Infinity);
    for (const box of ratioBoxes) box.disabled = full && !box.checked;
  }
  const chosenRatios = () => ratioBoxes.filter((b) => b.checked).map((b) => b.value);

  const form = h("form", { class: "stack generate-form", onsubmit: (event) => {
    event.preventDefault();
    if (form.reportValidity()) run().catch((error) => say(status, String(error), "error"));
  } },
  h("div", { class: "field" }, h("label", { for: "gen-prompt" }, "Prompt"), prompt),
  h("div", { class: "field" }, h("label", { for: "gen-collection" }, "Collection"), collection,
    h("datalist", { id: "gen-collections" }, collections.map((c) => option(c.name)))),
  sources.element,
  h("fieldset", { class: "formats" }, h("legend", {}, "Formats"),
    h("p", { class: "muted help" }, "None ticked: the model's default. ",
      formats.maxItems ? `Up to ${formats.maxItems}: ` : "", formats.description ?? ""),
    h("div", { class: "row" }, ratioBoxes.map((box) =>
      h("label", { class: "check", for: box.id }, box, box.value)))),
  h("div", { class: "row" },
    h("div", { class: "field" }, h("label", { for: "gen-count" }, "Images"), count),
    h("div", { class: "field" }, h("label", { for: "gen-size" }, "Size"), size),
    h("div", { class: "field" }, h("label", { for: "gen-kit" }, "Brand kit"), kit)),
  h("label", { class: "check" }, save, " Save the outputs to the collection, with their lineage (needed to edit them)"),
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary",
    disabled: !meta.generator_configured }, "Generate")));
  root.append(form, status, outputs);

  function body() {
    const spec = { prompt: prompt.value, collection: collection.value, count: Number(count.value),
      save_to_collection: save.checked };
    const ratios = chosenRatios();
    if (ratios.length === 1) spec.aspect_ratio = ratios[0];
    else if (ratios.length > 1) spec.aspect_ratios = ratios;
    if (size.value) spec.image_size = size.value;
    if (kit.value) spec.kit = kit.value;
    const references = sources.references();
    if (references.length) spec.references = references;
    return spec;
  }

  async function run() {
    const spec = body();
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await runGeneration(outputs, status, spec, `“${spec.prompt}”`);
    } finally {
      button.disabled = !meta.generator_configured;
    }
  }
}

function range(low, high) {
  return Array.from({ length: high - low + 1 }, (_, i) => low + i);
}
