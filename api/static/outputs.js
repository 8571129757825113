// A finished generation: the sources as the job sent them (in order, with roles), the outputs
// with their ratio and lineage, "Edit this" on a saved output, and saving an unsaved one.

import { follow, getJSON, openImage, paths, request, showImage, submit, upload } from "./api.js";
import { brandBadge } from "./brand.js";
import { h, say, shortId, smallThumb } from "./dom.js";
import { openAsset } from "./record.js";

// Runs a generation and shows it at the top of `outputs` (the newest result first).
export async function runGeneration(outputs, status, spec, heading = "Result") {
  say(status, "Generating…");
  const block = h("article", { class: "result card", "aria-label": heading, "aria-busy": "true" });
  try {
    const job = await follow(await submit("generate", spec));
    block.dataset.state = job.state;
    if (job.state !== "completed") {
      say(status, `The generation ${job.state}${job.error ? `: ${job.error.code}: ${job.error.message}` : ""}`, "error");
      return null;
    }
    const failed = job.errors.map((e) => `${e.source}: ${e.code}: ${e.message}`).join("; ");
    say(status, failed ? `Some variants failed: ${failed}` : "", failed ? "warn" : "");
    block.append(h("h2", {}, heading), ...(await resultParts(outputs, spec, job)));
    outputs.prepend(block);
    return job;
  } finally {
    block.removeAttribute("aria-busy");
  }
}

async function resultParts(outputs, spec, job) {
  const { result } = job;
  return [
    h("div", { class: "result-body" },
      h("div", { class: "column" }, h("h3", {}, "Sent to the model, in order"), await usedSources(result.sources ?? [])),
      h("div", { class: "column wide" }, h("h3", {}, `Outputs from ${result.model}`),
        h("ul", { class: "outputs" }, result.images.map((image, n) => outputTile(outputs, spec, job, image, n))),
        result.text ? h("p", { class: "muted" }, "The model said: ", result.text) : null,
        usageLine(result.usage))),
  ];
}

// The sources as used (`result.sources`): kind, role, label, a query's text and its hits.
export async function usedSources(sources) {
  if (!sources.length) return h("p", { class: "muted" }, "None: the prompt alone.");
  const items = await Promise.all(sources.map(async (source, n) => {
    const hits = await Promise.all((source.hits ?? []).map((hit) =>
      getJSON(paths.asset(hit.collection, hit.asset_id)).then((a) => ({ ...hit, asset: a }), () => hit)));
    return h("li", { class: "used", "data-kind": source.kind, "data-role": source.role },
      h("div", {}, h("strong", {}, `${n + 1}. ${source.role}`), ` · ${source.kind}`,
        source.label ? ` · “${source.label}”` : ""),
      source.query ? h("div", { class: "muted" }, `search “${source.query}” in ${source.collection}`) : null,
      source.upload_id ? h("div", { class: "muted" }, "upload ", shortId(source.sha256 || source.upload_id)) : null,
      source.url ? h("div", { class: "muted wrap" }, source.url) : null,
      hits.length ? h("ul", { class: "chips" }, hits.map((hit) => h("li", {},
        h("button", { type: "button", class: "chip", onclick: () => openAsset(hit.collection, hit.asset_id) },
          hit.asset ? smallThumb(hit.asset.thumbnail_url) : null,
          h("span", { class: "name" }, hit.asset?.filename || hit.asset_id.slice(0, 12)),
          hit.score == null ? "" : h("span", { class: "score" }, hit.score.toFixed(3)))))) : null);
  }));
  return h("ol", { class: "used-sources" }, items);
}

// What the job asked of Gemini and what it cost (a crash's re-sent calls included).
function usageLine(usage) {
  if (!usage) return null;
  const cost = usage.estimated_cost_usd == null ? "" : `, about $${usage.estimated_cost_usd.toFixed(3)}`;
  return h("p", { class: "muted usage" },
    `Gemini: ${usage.calls} call(s), ${usage.images_returned} image(s) returned, ` +
    `${usage.images_billed} billed${cost}`);
}

function outputTile(outputs, spec, job, image, n) {
  const img = h("img", { alt: `Output ${n + 1} for “${spec.prompt}”`, width: image.width, height: image.height });
  showImage(img, image.content_url);
  const ratio = image.aspect_ratio ? h("span", { class: "ratio" }, image.aspect_ratio) : null;
  const saving = h("span", { class: "row" });
  const more = h("div", { class: "stack tight" });
  const status = h("p", { class: "status", role: "status", hidden: true });
  const item = h("li", { class: "output-tile" }, h("figure", {}, img,
    h("figcaption", { class: "muted" }, ratio, ` ${image.width}×${image.height} ${image.mime_type}`)),
  brandBadge(image.brand, job.result.items?.[image.item]?.brand ?? job.result.brand),
  h("div", { class: "row" },
    h("button", { type: "button", onclick: () => openImage(image.content_url) }, "Full size"), saving),
  more, status);
  const saved = (assetId) => {
    saving.replaceChildren(
      h("button", { type: "button", onclick: () => openAsset(spec.collection, assetId) }, "Open record"),
      h("button", { type: "button", class: "primary", onclick: (event) => {
        event.target.disabled = true;
        more.prepend(editForm(outputs, spec, assetId, n));
        more.querySelector("input").focus();
      } }, "Edit this"),
      h("span", { class: "ok" }, `Saved to ${spec.collection}`));
    lineageOf(spec.collection, assetId).then((el) => more.append(el),
      (error) => say(status, `No lineage: ${error}`, "warn"));
  };
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
  return item;
}

// "Edit this": the output as the base image, the instruction as the prompt, saved so the
// edit can be edited again.
function editForm(outputs, spec, assetId, n) {
  const id = `edit-${assetId.slice(0, 12)}`;
  const instruction = h("input", { id, required: true, placeholder: "now make the shawl blue" });
  const status = h("p", { class: "status", role: "status", hidden: true });
  const form = h("form", { class: "edit-form", onsubmit: async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const edit = { prompt: instruction.value.trim(), collection: spec.collection, count: 1,
      save_to_collection: true, references: [{ asset_ids: [assetId], role: "base" }] };
    form.querySelector("button").disabled = true;
    try {
      await runGeneration(outputs, status, edit, `Edit of output ${n + 1}: “${edit.prompt}”`);
    } catch (error) {
      say(status, String(error), "error");
    } finally {
      form.querySelector("button").disabled = false;
    }
  } },
  h("label", { for: id }, "Edit instruction"),
  h("div", { class: "row" }, instruction, h("button", { type: "submit", class: "primary" }, "Run edit")),
  status);
  return form;
}

// GET …/lineage: each step back to the originals, with its prompt and its sources as used.
async function lineageOf(collection, assetId) {
  const lineage = await getJSON(paths.lineage(collection, assetId));
  const steps = await Promise.all(lineage.steps.map(async (step, n) => h("li", { class: "step" },
    h("div", {}, h("strong", {}, n ? `Step back ${n}` : "This image"), ` · “${step.prompt}”`,
      step.aspect_ratio ? ` · ${step.aspect_ratio}` : ""),
    await usedSources(step.sources))));
  return h("details", { class: "lineage" },
    h("summary", {}, `Lineage: ${lineage.steps.length} step(s), ${lineage.originals.length} original(s)`),
    h("ol", { class: "steps" }, steps));
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
