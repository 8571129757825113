// Recent jobs, newest first, refreshed while the page is open; cancel one, open one.

import { getJSON, isCancellable, isFinished, meta, request } from "./api.js";
import { duration, h, option, progressText, say, when } from "./dom.js";

const REFRESH_MS = 2000;
const PAGE = 25;

export async function mount(root, params) {
  const kind = h("select", { id: "jobs-kind", name: "kind" },
    option("", "all kinds"), meta.job_kinds.map((k) => option(k)));
  const state = h("select", { id: "jobs-state", name: "state" },
    option("", "any state"), meta.job_states.map((s) => option(s)));
  const status = h("p", { class: "status", role: "status" });
  const rows = h("tbody");
  const more = h("button", { type: "button", id: "more-jobs", hidden: true }, "Older jobs");
  const detail = h("section", { class: "job-detail card", hidden: true, "aria-labelledby": "job-title" });
  let shown = PAGE;
  let cursor = null;
  let openId = params.get("job");
  let timer = null;
  let stopped = false; // the page was left: no more refreshes
  let detailFinished = false; // a finished job's detail never changes: not redrawn

  async function refresh() {
    try {
      const query = new URLSearchParams({ limit: shown });
      if (kind.value) query.set("kind", kind.value);
      if (state.value) query.set("state", state.value);
      const page = await getJSON(`/v1/jobs?${query}`);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      keepingFocus(rows, () => rows.replaceChildren(...page.data.map(row)));
      if (!page.data.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs.")));
      if (openId && !detailFinished) await showDetail(openId, false);
      say(status, "");
    } catch (error) {
      say(status, String(error), "error");
    }
    // A refresh run by a click may overlap the timer's: still one timer, none once left.
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  function row(job) {
    const actions = [h("button", { type: "button", onclick: () => open(job.id) }, "Details")];
    if (isCancellable(job)) {
      actions.push(h("button", { type: "button", class: "danger", onclick: () => cancel(job.id) }, "Cancel"));
    }
    const { total, succeeded, failed } = job.progress;
    return h("tr", { "data-job-id": job.id, "data-state": job.state, "aria-current": job.id === openId ? "true" : null },
      h("td", { "data-label": "Created" }, when(job.created_at)),
      h("td", { "data-label": "Kind" }, job.kind),
      h("td", { "data-label": "State" }, h("span", { class: `state ${job.state}` }, job.state)),
      h("td", { "data-label": "Progress" },
        h("progress", { max: Math.max(total, 1), value: succeeded + failed, "aria-label": `Progress of ${job.kind} job` }),
        " ", h("span", { class: "muted" }, progressText(job.progress))),
      h("td", { "data-label": "Duration" }, duration(job)),
      h("td", {}, h("div", { class: "actions" }, actions)));
  }

  async function cancel(id) {
    try {
      await request(`/v1/jobs/${id}/cancel`, { method: "POST" });
      say(status, "Cancelled.");
    } catch (error) {
      say(status, String(error), "error");
    }
    await refresh();
  }

  async function open(id) {
    openId = id;
    try {
      await showDetail(id, true);
    } catch (error) {
      say(status, String(error), "error");
    }
    for (const tr of rows.querySelectorAll("tr")) {
      tr.toggleAttribute("aria-current", tr.dataset.jobId === id);
    }
  }

  async function showDetail(id, focus) {
    const job = await getJSON(`/v1/jobs/${id}`);
    detailFinished = isFinished(job);
    detail.hidden = false;
    detail.replaceChildren(...jobDetail(job, () => {
      openId = null;
      detail.hidden = true;
    }).filter(Boolean));
    if (focus) detail.querySelector("h2").focus();
  }

  more.addEventListener("click", async () => {
    shown = Math.min(shown + PAGE, 500);
    await refresh();
  });
  for (const select of [kind, state]) select.addEventListener("change", refresh);

  root.append(
    h("h1", {}, "Jobs"),
    h("form", { class: "row filters", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "jobs-kind" }, "Kind"), kind),
      h("div", { class: "field" }, h("label", { for: "jobs-state" }, "State"), state)),
    status,
    detail,
    h("table", { class: "jobs" },
      h("caption", { class: "visually-hidden" }, "Recent jobs, newest first"),
      h("thead", {}, h("tr", {}, ["Created", "Kind", "State", "Progress", "Duration", "Actions"]
        .map((t) => h("th", { scope: "col" }, t)))),
      rows),
    more,
  );
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// Redraws rows every few seconds without taking keyboard focus off the button it was on.
function keepingFocus(container, redraw) {
  const focused = document.activeElement;
  const where = container.contains(focused)
    ? { id: focused.closest("tr")?.dataset.jobId, label: focused.textContent }
    : null;
  redraw();
  if (!where) return;
  const buttons = container.querySelectorAll(`tr[data-job-id="${where.id}"] button`);
  [...buttons].find((b) => b.textContent === where.label)?.focus();
}

function jobDetail(job, onClose) {
  const facts = [
    ["Id", h("code", { class: "wrap" }, job.id)],
    ["Kind", job.kind],
    ["State", h("span", { class: `state ${job.state}` }, job.state)],
    ["Progress", progressText(job.progress)],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Duration", duration(job)],
  ];
  return [
    h("header", { class: "row spread" },
      h("h2", { id: "job-title", tabindex: -1 }, `${job.kind} job`),
      h("button", { type: "button", onclick: onClose }, "Close")),
    h("dl", {}, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    job.error ? h("p", { class: "status error" }, `${job.error.code}: ${job.error.message}`) : null,
    job.errors.length
      ? h("table", { class: "errors" },
        h("caption", {}, `${job.errors.length} ${job.errors.length === 1 ? "item" : "items"} failed`),
        h("thead", {}, h("tr", {}, ["#", "Source", "Code", "Why"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, job.errors.map((e) => h("tr", {},
          h("td", {}, String(e.index)), h("td", { class: "wrap" }, e.source),
          h("td", {}, h("code", {}, e.code)), h("td", {}, e.message)))))
      : null,
    isFinished(job) && job.result
      ? h("details", {}, h("summary", {}, "Result"), h("pre", {}, JSON.stringify(job.result, null, 2)))
      : null,
  ];
}
