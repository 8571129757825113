// Collections with their counts and model; a collection's assets, page by page.

import { getJSON, listCollections, paths } from "./api.js";
import { h, ingestFirst, modelName, say, tile } from "./dom.js";
import { openAsset } from "./record.js";

export async function mount(root, params) {
  const collections = await listCollections();
  root.append(h("h1", {}, "Library"));
  if (!collections.length) {
    root.append(ingestFirst());
    return;
  }
  const chosen = collections.find((c) => c.name === params.get("collection")) ?? collections[0];
  root.append(
    h("ul", { class: "collections", "aria-label": "Collections" }, collections.map((c) => h("li", {},
      h("a", {
        class: "card",
        href: `#/library?collection=${encodeURIComponent(c.name)}`,
        "aria-current": c === chosen ? "true" : null,
      },
      h("strong", {}, c.name),
      h("span", {}, `${c.count ?? "?"} assets`),
      h("span", { class: "muted", title: `${c.model}: ${c.dimension}-d, ${c.metric}` },
        `${modelName(c.model)}, ${c.dimension}-d`),
      h("span", { class: "muted" }, `created ${day(c.created_at)}`))))),
  );
  const assets = h("section", { class: "assets", "aria-labelledby": "assets-title" });
  root.append(assets);
  await pages(assets, chosen);
}

// Cursor paging: the cursors of the pages seen so far, so "previous" goes back.
async function pages(section, collection) {
  const cursors = [null];
  let index = 0;
  let size = 0;
  const title = h("h2", { id: "assets-title" }, collection.name);
  const status = h("p", { class: "status", role: "status" });
  const grid = h("ul", { class: "grid" });
  const previous = h("button", { type: "button", onclick: () => show(index - 1) }, "Previous page");
  const next = h("button", { type: "button", onclick: () => show(index + 1) }, "Next page");
  const named = `collection=${encodeURIComponent(collection.name)}`;
  const upkeep = h("p", { class: "row upkeep" },
    h("a", { href: `#/duplicates?${named}` }, "Find duplicates"),
    h("a", { href: `#/reindex?${named}` }, "Re-index or see versions"));
  section.append(title, upkeep, status, grid, h("nav", { class: "row pager", "aria-label": "Pages of assets" }, previous, next));

  async function show(at) {
    say(status, "Loading…");
    const cursor = cursors[at];
    const path = paths.assets(collection.name);
    let page;
    try {
      page = await getJSON(cursor ? `${path}?cursor=${cursor}` : path);
    } catch (error) {
      say(status, String(error), "error");
      return;
    }
    index = at;
    size = size || page.data.length;
    cursors[at + 1] = page.next_cursor;
    const first = at * size + 1;
    title.textContent = page.data.length
      ? `${collection.name}: assets ${first}–${first + page.data.length - 1} of ${collection.count ?? "?"}`
      : `${collection.name} is empty`;
    grid.replaceChildren(...page.data.map((asset) => tile({
      thumbnailUrl: asset.thumbnail_url,
      title: asset.filename || asset.asset_id,
      onOpen: () => openAsset(collection.name, asset.asset_id),
    })));
    previous.disabled = index === 0;
    next.disabled = !page.next_cursor;
    say(status, "");
  }

  await show(0);
}

const day = (epochSeconds) => new Date(epochSeconds * 1000).toLocaleDateString();
