// The library audit: POST /v1/jobs/brand-check scores every asset of a collection against a
// kit; its results file (one line per asset) is shown as a grid sortable by similarity,
// palette distance or passed.

import { follow, jobResults, listCollections, meta, paths, showImage, submit } from "./api.js";
import { busyWhile, collectionSelect, h, meter, say } from "./dom.js";
import { openAsset } from "./record.js";

const COLUMNS = [
  { key: "similarity", label: "Similarity", digits: 3 },
  { key: "palette_distance", label: "Palette distance", digits: 1 },
  { key: "passed", label: "Passed" },
];

export async function auditPanel(kit) {
  const ref = `${kit.name}@${kit.version}`;
  const collections = await listCollections();
  const select = collectionSelect(collections, kit.collection, { id: "audit-collection" });
  const status = h("p", { class: "status", role: "status", hidden: true });
  const progress = meter("audit-progress", "Checked");
  progress.row.hidden = true;
  const out = h("div", { class: "audit-out" });
  const button = h("button", { type: "button", class: "primary", onclick: () => run() }, "Check the library");
  const panel = h("section", { class: "audit card", "aria-labelledby": "audit-title" },
    h("h2", { id: "audit-title" }, `Check the library against ${ref}`),
    h("p", { class: "muted help" }, "Scores every asset of the collection against the kit: its likeness to the kit's references and its distance from the palette."),
    h("div", { class: "row" }, h("div", { class: "field" }, h("label", { for: "audit-collection" }, "Collection"), select), button),
    progress.row, status, out);

  async function run() {
    button.disabled = true;
    out.replaceChildren();
    say(status, "Checking…");
    progress.row.hidden = false;
    const collection = select.value;
    try {
      await busyWhile(out, async () => {
        const job = await follow(await submit("brand-check", { collection, kit: ref }), progress.show);
        progress.show(job);
        if (job.state !== "completed") {
          say(status, `The check ${job.state}${job.error ? `: ${job.error.code}: ${job.error.message}` : ""}`, "error");
          return;
        }
        const { checked, passed, failed } = job.result;
        say(status, `${checked} checked against ${job.result.kit}: ${passed} passed, ${failed} off-brand.`, failed ? "warn" : "ok");
        out.replaceChildren(auditGrid(collection, await jobResults(job)));
      });
    } catch (error) {
      say(status, String(error), "error");
    } finally {
      button.disabled = false;
    }
  }
  return panel;
}

// lines: {index, status, result: {asset_id, filename, similarity, palette_distance, passed}}
// (a line without a result carries its error)
export function auditGrid(collection, lines) {
  const scored = lines.filter((line) => line.result);
  const unscored = lines.filter((line) => !line.result);
  const size = meta.thumbnail_sizes.includes(128) ? 128 : Math.min(...meta.thumbnail_sizes);
  let sortKey = null;
  let ascending = true;
  const body = h("tbody");
  const heads = COLUMNS.map((column) => {
    const th = h("th", { scope: "col", "data-key": column.key },
      h("button", { type: "button", class: "sort", onclick: () => sortBy(column.key) }, column.label));
    return th;
  });

  function sortBy(key) {
    ascending = sortKey === key ? !ascending : true;
    sortKey = key;
    for (const th of heads) {
      if (th.dataset.key === key) th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    show();
  }

  function value(line, key) {
    const v = line.result[key];
    return v == null ? -Infinity : Number(v);
  }

  function show() {
    const rows = [...scored];
    if (sortKey) {
      rows.sort((a, b) => (value(a, sortKey) - value(b, sortKey)) * (ascending ? 1 : -1) || a.index - b.index);
    }
    body.replaceChildren(...rows.map((line, n) => row(line, n)), ...unscored.map(errorRow));
  }

  function row(line, n) {
    const { asset_id, filename, passed } = line.result;
    const img = h("img", { alt: "", width: 64, height: 64, loading: n < 60 ? "eager" : "lazy" });
    showImage(img, paths.thumbnail(collection, asset_id, size));
    return h("tr", { class: passed ? "passed" : "off-brand", "data-asset": asset_id },
      h("td", { class: "thumb-cell" }, h("button", { type: "button", class: "thumb",
        "aria-label": `Open ${filename || asset_id}`, onclick: () => openAsset(collection, asset_id) }, img)),
      h("td", { class: "file", title: filename || asset_id }, filename || asset_id),
      COLUMNS.map((column) => h("td", { class: `num ${column.key}` }, cell(line.result[column.key], column))));
  }

  function errorRow(line) {
    const error = line.error ? `${line.error.code}: ${line.error.message}` : line.status;
    return h("tr", { class: "unscored" }, h("td", {}), h("td", { colspan: COLUMNS.length + 1, class: "error" },
      `Line ${line.index}: ${error}`));
  }

  show();
  return h("div", { class: "table-scroll" }, h("table", { class: "audit-grid" },
    h("caption", {}, `${scored.length} asset(s) scored${unscored.length ? `, ${unscored.length} not` : ""}: sort by a column`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Image"), h("th", { scope: "col" }, "File"), heads)),
    body));
}

function cell(v, column) {
  if (column.key === "passed") return h("span", { class: v ? "ok" : "error" }, v ? "passed" : "off-brand");
  return v == null ? "–" : v.toFixed(column.digits);
}
