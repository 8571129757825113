// Re-index a collection into a new version with another CLIP model (or the same one, to gain
// what newer versions carry): start the job, follow it to the moment the collection's name
// moves onto the new version, and see its versions, dropping ones that no longer answer.

import { cancel, deleteRequest, follow, getJSON, isCancellable, isFinished, listCollections, meta, paths, postJSON } from "./api.js";
import { busyWhile, collectionSelect, confirmAction, h, ingestFirst, meter, modelName, option, say, when } from "./dom.js";

// The re-index last started from this page, per collection: followed again when the page is
// opened anew while it runs, and its outcome shown once it has ended.
const started = new Map();
const VERSIONS_REFRESH_MS = 1000;

export const title = "Re-index";

export async function mount(root, params) {
  const collections = await listCollections();
  root.append(h("h1", {}, "Re-index"));
  if (!collections.length) {
    root.append(ingestFirst());
    return;
  }
  const byName = new Map(collections.map((c) => [c.name, c]));
  const first = byName.get(params.get("collection")) ?? collections[0];
  const select = collectionSelect(collections, first.name, { id: "reindex-collection", name: "collection" });
  const model = h("select", { id: "reindex-model", name: "model", required: true });
  const drop = h("input", { id: "reindex-drop", name: "drop_previous", type: "checkbox" });
  const facts = h("p", { class: "facts", id: "reindex-facts" });
  const status = h("p", { class: "status", role: "status" });
  const runs = h("div", { class: "runs" });
  const versions = h("section", { class: "versions", "aria-labelledby": "versions-title" });
  let controller = new AbortController(); // stops following when the page is left

  const chosen = () => byName.get(select.value);

  function showCollection() {
    const c = chosen();
    facts.replaceChildren(
      h("strong", {}, c.name), ` answers from version ${c.version}: `,
      h("span", { title: c.model }, modelName(c.model)), `, ${c.dimension}-d, ${c.count ?? "?"} assets, `,
      c.keyword_search ? "keyword search on." : "no keyword search (a re-index adds it).");
    // the models this server offers (GET /v1/meta); another model than the current one first
    const offered = [...meta.models].sort((a, b) => (a === c.model) - (b === c.model));
    model.replaceChildren(...offered.map((m) =>
      option(m, m === c.model ? `${modelName(m)} (current: a rebuild)` : modelName(m))));
    for (const choice of model.options) choice.title = choice.value;
  }

  async function refreshVersions() {
    const name = select.value;
    const running = started.get(name);
    const building = running && !isFinished(running.job) ? running.job.result?.version : null;
    await busyWhile(versions, async () => {
      try {
        const page = await getJSON(paths.versions(name));
        if (name === select.value) versions.replaceChildren(...versionTable(name, page.data, building, dropVersion));
      } catch (error) {
        versions.replaceChildren(h("p", { class: "status error" }, String(error)));
      }
    });
  }

  async function dropVersion(name, version, current) {
    const sure = await confirmAction({
      title: `Drop version ${version.version} of ${name}?`,
      text: [`Its ${version.count} vectors (${modelName(version.model)}) are deleted. No search answers `
        + `from it, so no search changes; the originals and version ${current} stay.`,
      "This cannot be undone."],
      action: `Drop version ${version.version}`,
    });
    if (!sure) return;
    try {
      await deleteRequest(paths.version(name, version.version));
      say(status, `Version ${version.version} of ${name} dropped.`, "ok");
    } catch (error) {
      say(status, String(error), "error");
    }
    await refreshVersions();
  }

  async function reloadCollection(name) {
    const fresh = await getJSON(paths.collection(name));
    byName.set(name, fresh);
    const choice = [...select.options].find((o) => o.value === name);
    if (choice) choice.textContent = `${name} (${fresh.count ?? "?"})`;
    if (name === select.value) showCollection();
  }

  // Follows one re-index to its end in its own card; the versions table follows along.
  async function watch(name, entry) {
    const card = h("section", { class: "run card", "data-state": entry.job.state, "aria-labelledby": `run-${entry.job.id}` });
    const bar = meter(`reindex-${entry.job.id}`, "Copied");
    const state = h("span", { class: `state ${entry.job.state}` }, entry.job.state);
    const outcome = h("p", { class: "status", role: "status" });
    const stop = h("button", { type: "button", class: "danger", onclick: async () => {
      stop.disabled = true;
      await cancel(entry.job).catch((error) => say(outcome, String(error), "error"));
    } }, "Cancel");
    card.append(
      h("header", { class: "row spread" },
        h("h2", { id: `run-${entry.job.id}` }, `${name} to ${modelName(entry.model)}`), state),
      bar.row, outcome, h("div", { class: "row" }, stop,
        h("a", { href: `#/jobs?job=${entry.job.id}` }, "See the job")));
    runs.replaceChildren(card);
    let refreshed = 0;
    const show = (job) => {
      entry.job = job;
      bar.show(job);
      card.dataset.state = job.state;
      state.className = `state ${job.state}`;
      state.textContent = job.state;
      stop.hidden = !isCancellable(job);
      if (Date.now() - refreshed > VERSIONS_REFRESH_MS && name === select.value) {
        refreshed = Date.now();
        refreshVersions();
      }
    };
    show(entry.job);
    const { signal } = controller; // aborted when the page is left or another collection chosen
    await busyWhile(card, async () => {
      try {
        show(await follow(entry.job, show, signal));
      } catch (error) {
        if (!signal.aborted) say(outcome, String(error), "error");
      }
    });
    if (signal.aborted) return;
    showOutcome(outcome, name, entry.job);
    await reloadCollection(name).catch(() => {});
    if (name === select.value) await refreshVersions();
  }

  async function start() {
    const name = select.value;
    say(status, "");
    try {
      const body = { model: model.value, drop_previous: drop.checked };
      const job = await postJSON(paths.reindex(name), body);
      const entry = { job, model: model.value };
      started.set(name, entry);
      await watch(name, entry);
    } catch (error) {
      say(status, String(error), "error");
    }
  }

  function showChosen() {
    showCollection();
    say(status, "");
    const entry = started.get(select.value);
    runs.replaceChildren();
    if (entry) watch(select.value, entry);
    refreshVersions();
  }

  select.addEventListener("change", () => {
    history.replaceState(null, "", `#/reindex?collection=${encodeURIComponent(select.value)}`);
    controller.abort();
    controller = new AbortController();
    showChosen();
  });

  const form = h("form", { class: "stack reindex-form", onsubmit: (event) => {
    event.preventDefault();
    if (form.reportValidity()) start();
  } },
  h("div", { class: "row" },
    h("div", { class: "field" }, h("label", { for: "reindex-collection" }, "Collection"), select),
    h("div", { class: "field grow" }, h("label", { for: "reindex-model" }, "New model"), model)),
  facts,
  h("label", { class: "check" }, drop, " Drop the version it replaces once the new one answers"),
  h("p", { class: "muted" },
    "Searches keep answering from the current version while the new one is built from the "
    + "originals; then the collection's name moves to the new version in one step."),
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Start re-index")));
  root.append(form, status, runs, versions);
  showChosen();
  return () => controller.abort();
}

function showOutcome(outcome, name, job) {
  const result = job.result;
  if (job.state === "completed" && result?.swapped) {
    const dropped = result.previous_dropped
      ? `version ${result.from_version} was dropped`
      : `version ${result.from_version} stays until you drop it`;
    const failed = job.errors.length ? ` ${job.errors.length} assets could not be copied.` : "";
    say(outcome, `${name} now answers from version ${result.version} (${modelName(result.model)}, `
      + `${result.dimension}-d) instead of version ${result.from_version}; ${dropped}.${failed}`,
    failed ? "warn" : "ok");
  } else if (job.error) {
    say(outcome, `The re-index ${job.state}: ${job.error.code}: ${job.error.message}`, "error");
  } else {
    say(outcome, `The re-index ${job.state}; ${name} still answers from the version it had.`, "warn");
  }
}

function versionTable(name, versions, building, onDrop) {
  const current = versions.find((v) => v.current)?.version;
  const row = (v) => {
    const where = v.current
      ? h("span", { class: "state completed" }, "answers")
      : v.version === building
        ? h("span", { class: "state running" }, "being built")
        : h("span", { class: "muted" }, "not in use");
    const drop = v.current || v.version === building
      ? null
      : h("button", { type: "button", class: "danger", onclick: () => onDrop(name, v, current),
        "aria-label": `Drop version ${v.version}` }, "Drop");
    return h("tr", { "data-version": v.version, "aria-current": v.current ? "true" : null },
      h("td", { "data-label": "Version" }, String(v.version)),
      h("td", { "data-label": "Model" }, h("span", { title: v.model }, modelName(v.model))),
      h("td", { "data-label": "Dimension" }, String(v.dimension)),
      h("td", { "data-label": "Assets" }, String(v.count)),
      h("td", { "data-label": "Keyword search" }, v.keyword_search ? "yes" : "no"),
      h("td", { "data-label": "Created" }, when(v.created_at)),
      h("td", { "data-label": "State" }, where),
      h("td", {}, drop));
  };
  return [
    h("h2", { id: "versions-title" }, `Versions of ${name}`),
    h("table", { class: "versions cards" },
      h("caption", { class: "visually-hidden" }, `Versions of ${name}, oldest first`),
      h("thead", {}, h("tr", {}, ["Version", "Model", "Dimension", "Assets", "Keyword search", "Created", "State", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, versions.map(row))),
  ];
}
