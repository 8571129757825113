// Near-duplicate assets in a collection: run a duplicates job, see each cluster's assets as
// thumbnails, keep one asset of a cluster and delete the others (after a confirm).

import { deleteRequest, follow, getJSON, listCollections, paths, requestSchema, submit } from "./api.js";
import { busyWhile, collectionSelect, confirmAction, h, ingestFirst, meter, say, shortId, tile } from "./dom.js";
import { openAsset } from "./record.js";

const CLUSTERS_PAGE = 20;
// The last search for duplicates, shown again when the user comes back to this page.
let last = null; // {collection, job}

export async function mount(root, params) {
  const [collections, request] = await Promise.all([listCollections(), requestSchema("DuplicatesRequest")]);
  root.append(h("h1", {}, "Duplicates"));
  if (!collections.length) {
    root.append(ingestFirst());
    return;
  }
  const bounds = request.properties.threshold; // the contract's bounds, from the OpenAPI schema
  const named = params.get("collection");
  const chosen = collections.some((c) => c.name === named) ? named : (last?.collection ?? collections[0].name);
  const select = collectionSelect(collections, chosen, { id: "dup-collection", name: "collection" });
  const threshold = h("input", {
    id: "dup-threshold",
    name: "threshold",
    type: "number",
    required: true,
    min: bounds.minimum,
    max: bounds.maximum,
    step: 0.01,
    value: last?.collection === chosen ? last.job.result?.threshold ?? bounds.default : bounds.default,
    "aria-describedby": "dup-threshold-help",
  });
  const status = h("p", { class: "status", role: "status" });
  const run = h("section", { class: "run card", hidden: true, "aria-labelledby": "dup-run-title" });
  const found = h("section", { class: "clusters-found", "aria-labelledby": "clusters-title" });

  // The job's card: what is compared, its progress, then what it found.
  function runCard(collection, alike) {
    const bar = meter("dup-progress", "Compared");
    const summary = h("p", { class: "status", role: "status" });
    run.hidden = false;
    run.replaceChildren(h("h2", { id: "dup-run-title" }, `${collection}, at ${alike} or more alike`), bar.row, summary);
    return { bar, summary };
  }

  async function find() {
    const collection = select.value;
    const alike = Number(threshold.value);
    say(status, "");
    found.replaceChildren();
    const card = runCard(collection, alike);
    await busyWhile(run, async () => {
      try {
        const job = await follow(await submit("duplicates", { collection, threshold: alike }), card.bar.show);
        last = { collection, job };
        await showJob(collection, job, card);
      } catch (error) {
        say(card.summary, String(error), "error");
      }
    });
  }

  async function showJob(collection, job, card = runCard(collection, job.result?.threshold ?? "")) {
    card.bar.show(job);
    if (job.state !== "completed") {
      say(card.summary, `The search for duplicates ${job.state}${job.error ? `: ${job.error.message}` : ""}`, "error");
      return;
    }
    const { cluster_count: clusters, duplicate_count: assets, scanned } = job.result;
    say(card.summary, clusters
      ? `${clusters} ${clusters === 1 ? "cluster" : "clusters"} of near-duplicates (${assets} assets) among `
        + `${scanned} compared.`
      : `No near-duplicates among ${scanned} assets.`, clusters ? "" : "ok");
    if (!clusters) return;
    const list = h("ol", { class: "clusters" });
    const more = h("button", { type: "button", id: "more-clusters", hidden: true }, "More clusters");
    found.replaceChildren(h("h2", { id: "clusters-title" }, `Clusters in ${collection}, largest first`), list, more);
    let cursor = null;
    let shown = 0;
    const page = () => busyWhile(found, async () => {
      const query = new URLSearchParams({ limit: CLUSTERS_PAGE });
      if (cursor) query.set("cursor", cursor);
      const answer = await getJSON(`${paths.clusters(job.id)}?${query}`);
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      const items = await Promise.all(answer.data.map((cluster) =>
        clusterView(collection, cluster, ++shown, () => recount(select, collection))));
      list.append(...items);
    });
    more.addEventListener("click", () => page().catch((error) => say(status, String(error), "error")));
    await page();
  }

  const form = h("form", { class: "search-form", onsubmit: (event) => {
    event.preventDefault();
    if (form.reportValidity()) find();
  } },
  h("div", { class: "field" }, h("label", { for: "dup-collection" }, "Collection"), select),
  h("div", { class: "field narrow" }, h("label", { for: "dup-threshold" }, "Alike"), threshold),
  h("button", { type: "submit", class: "primary" }, "Find duplicates"),
  h("small", { id: "dup-threshold-help", class: "muted help" },
    `How alike two images must be to count as duplicates: a cosine similarity from ${bounds.minimum} `
    + `to ${bounds.maximum}; ${bounds.maximum} finds only copies, lower finds looser matches.`));
  root.append(form, status, run, found);
  select.addEventListener("change", () => {
    history.replaceState(null, "", `#/duplicates?collection=${encodeURIComponent(select.value)}`);
    say(status, "");
    run.hidden = true;
    found.replaceChildren();
    if (last?.collection === select.value) showJob(select.value, last.job).catch((error) => say(status, String(error), "error"));
  });
  if (last?.collection === chosen) await showJob(chosen, last.job);
}

// One cluster: its assets as tiles, one picked to keep, and a button deleting the others.
async function clusterView(collection, cluster, number, onDeleted) {
  const records = await Promise.all(cluster.asset_ids.map((id) =>
    getJSON(paths.asset(collection, id)).catch((error) =>
      error.status === 404 ? { asset_id: id, gone: true } : { asset_id: id, error })));
  const here = records.filter((r) => !r.gone && !r.error);
  const keep = bestOf(here)?.asset_id;
  const name = `keep-${number}`;
  const status = h("p", { class: "status", role: "status" });
  // floored: "at least" must hold
  const alike = (Math.floor(cluster.min_similarity * 1000) / 1000).toFixed(3);
  const title = `Cluster ${number}: ${cluster.asset_ids.length} assets, at least ${alike} alike`;
  const view = h("li", { class: "cluster card", "data-cluster": number, "aria-labelledby": `${name}-title` });
  const tiles = records.map((r) => memberTile(collection, r, name, r.asset_id === keep));
  const radios = () => [...view.querySelectorAll(`input[name="${name}"]`)];
  const remove = h("button", { type: "button", class: "danger", onclick: () => resolve() }, "");
  const label = () => {
    const others = radios().filter((r) => !r.checked).length;
    remove.textContent = `Delete the other ${others === 1 ? "asset" : `${others} assets`}`;
  };
  view.append(
    h("h3", { id: `${name}-title` }, title),
    h("ul", { class: "grid" }, tiles),
    h("div", { class: "row" }, remove),
    status,
  );
  view.addEventListener("change", label);
  label();

  async function resolve() {
    const kept = radios().find((r) => r.checked);
    const doomed = radios().filter((r) => !r.checked).map((r) => r.value);
    const keptName = nameOf(records.find((r) => r.asset_id === kept?.value));
    const sure = await confirmAction({
      title: `Delete ${doomed.length === 1 ? "1 asset" : `${doomed.length} assets`} from ${collection}?`,
      text: [`${keptName} stays. ${doomed.map((id) => nameOf(records.find((r) => r.asset_id === id))).join(", ")} `
        + "will no longer be found, listed or shown.", "This cannot be undone."],
      action: "Delete",
    });
    if (!sure) return;
    remove.disabled = true;
    const failed = [];
    await busyWhile(view, () => Promise.all(doomed.map(async (id) => {
      try {
        await deleteRequest(paths.asset(collection, id));
        markGone(view.querySelector(`[data-asset-id="${id}"]`));
      } catch (error) {
        failed.push(`${id.slice(0, 12)}…: ${error}`);
      }
    })));
    onDeleted();
    if (failed.length) {
      remove.disabled = false;
      label();
      say(status, `Not deleted: ${failed.join("; ")}`, "error");
      return;
    }
    done(`Kept ${keptName}; deleted ${doomed.length}.`);
  }

  function done(text) {
    view.dataset.state = "resolved";
    remove.hidden = true;
    for (const radio of radios()) radio.disabled = true;
    say(status, text, "ok");
  }

  if (here.length < 2) done(here.length ? `Only ${nameOf(here[0])} is left.` : "None of these is left.");
  return view;
}

function memberTile(collection, record, name, checked) {
  if (record.gone || record.error) {
    const why = record.gone ? "deleted" : String(record.error);
    return h("li", { class: "tile gone", "data-asset-id": record.asset_id },
      h("div", { class: "thumb" }), h("span", { class: "name" }, shortId(record.asset_id)),
      h("div", { class: "meta" }, h("span", { class: "muted" }, why)));
  }
  const title = nameOf(record);
  const keep = h("input", { type: "radio", name, value: record.asset_id, checked, "aria-label": `Keep ${title}` });
  const item = tile({
    thumbnailUrl: record.thumbnail_url,
    title,
    caption: h("span", { class: "muted" }, `${record.width}×${record.height}`),
    onOpen: () => openAsset(collection, record.asset_id),
    extra: [h("label", { class: "pick" }, keep, "Keep")],
  });
  item.dataset.assetId = record.asset_id;
  return item;
}

function markGone(item) {
  if (!item) return;
  item.classList.add("gone");
  item.querySelector("label.pick")?.replaceChildren(h("span", { class: "muted" }, "deleted"));
}

const nameOf = (record) => record?.filename || record?.asset_id.slice(0, 12) || "?";

// The one to keep unless the user picks another: the most pixels, then the oldest.
function bestOf(records) {
  return [...records].sort((a, b) => b.width * b.height - a.width * a.height || a.created_at - b.created_at)[0];
}

// The collection's count in the picker, after deletes.
async function recount(select, collection) {
  try {
    const fresh = await getJSON(paths.collection(collection));
    const choice = [...select.options].find((o) => o.value === collection);
    if (choice) choice.textContent = `${collection} (${fresh.count ?? "?"})`;
  } catch {
    // the count is a nicety; the deletes themselves were reported
  }
}
