// An asset's record in a dialog: preview, metadata, lineage and source, with "find similar"
// and "use as reference".

import { getJSON, meta, openImage, paths, resized, showImage } from "./api.js";
import { h, say, shortId, smallThumb, when } from "./dom.js";
import { pick } from "./picks.js";

export async function openAsset(collection, assetId) {
  const dialog = document.getElementById("asset-dialog");
  const status = h("p", { class: "status", role: "status" }, "Loading…");
  dialog.replaceChildren(status);
  if (!dialog.open) dialog.showModal();
  try {
    const asset = await getJSON(paths.asset(collection, assetId));
    dialog.replaceChildren(await render(collection, asset, dialog));
    dialog.querySelector("h2").focus();
  } catch (error) {
    say(status, String(error), "error");
    dialog.append(closeButton(dialog));
  }
}

function closeButton(dialog) {
  return h("button", { type: "button", onclick: () => dialog.close() }, "Close");
}

function go(dialog, hash) {
  dialog.close();
  location.hash = hash;
}

async function render(collection, asset, dialog) {
  const { lineage, ...metadata } = asset.metadata;
  const preview = h("img", {
    alt: `Preview of ${asset.filename}`,
    class: "preview",
    width: asset.width,
    height: asset.height,
  });
  showImage(preview, resized(asset.thumbnail_url, Math.max(...meta.thumbnail_sizes)));
  const facts = [
    ["Asset id", h("code", { class: "wrap" }, asset.asset_id)],
    ["Collection", collection],
    ["Source", h("span", { class: "wrap" }, asset.source)],
    ["Type", asset.mime_type],
    ["Size", `${asset.width} × ${asset.height} px`],
    ["Added", when(asset.created_at)],
  ];
  if (Object.keys(metadata).length) {
    facts.push(["Metadata", h("pre", {}, JSON.stringify(metadata, null, 2))]);
  }
  const similar = new URLSearchParams({ collection, like: asset.asset_id });
  return h(
    "article",
    { class: "record" },
    h("header", { class: "row spread" },
      h("h2", { id: "asset-title", tabindex: -1, class: "wrap" }, asset.filename || asset.asset_id),
      closeButton(dialog)),
    h("div", { class: "record-body" },
      h("figure", {}, preview),
      h("div", {},
        h("dl", {}, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
        lineage ? await lineageOf(collection, lineage, dialog) : null,
        h("div", { class: "row" },
          h("button", { type: "button", class: "primary",
            onclick: () => go(dialog, `#/search?${similar}`) }, "Find similar"),
          h("button", { type: "button", onclick: () => {
            pick(collection, asset);
            go(dialog, "#/generate");
          } }, "Use as reference"),
          h("button", { type: "button", onclick: () => openImage(asset.content_url) },
            "Open original")))),
  );
}

// Generated assets carry their lineage: the prompt, the reference assets, model and job.
async function lineageOf(collection, lineage, dialog) {
  const references = await Promise.all(
    (lineage.references || []).map((id) =>
      getJSON(paths.asset(collection, id)).catch(() => ({ asset_id: id, missing: true }))),
  );
  return h("section", { class: "lineage" },
    h("h3", {}, "Lineage"),
    h("dl", {},
      h("dt", {}, "Prompt"), h("dd", {}, lineage.prompt),
      h("dt", {}, "Model"), h("dd", {}, lineage.model),
      h("dt", {}, "Job"), h("dd", {}, h("a", { href: `#/jobs?job=${lineage.job_id}`,
        onclick: () => dialog.close() }, shortId(lineage.job_id)))),
    references.length ? h("h4", {}, "Made from") : null,
    h("ul", { class: "chips" }, references.map((ref) => h("li", {},
      ref.missing
        ? shortId(ref.asset_id)
        : h("button", { type: "button", class: "chip",
          onclick: () => openAsset(collection, ref.asset_id) }, smallThumb(ref.thumbnail_url), ref.filename)))),
  );
}
