// Kits: a tenant's brand kits (GET /v1/kits) with their palettes, a new kit made from the hits
// picked in Search; a kit's page (#/kits?kit=NAME) shows every version (palette, references),
// saves a new version (PUT), deletes the kit, and checks the library against it (audit.js).

import { deleteRequest, getJSON, paths } from "./api.js";
import { auditPanel } from "./audit.js";
import { checksText, swatches } from "./brand.js";
import { busyWhile, confirmAction, h, say, when } from "./dom.js";
import { kitForm, refChip } from "./kitform.js";

export const title = "Kits";

export async function mount(root, params) {
  const name = params.get("kit");
  if (name) return detail(root, name);
  return list(root);
}

async function list(root) {
  const { data: kits } = await getJSON(paths.kits());
  root.append(h("h1", {}, "Brand kits"),
    h("p", { class: "muted help" }, "A kit holds a brand's references, style and palette; every output made with it is scored, and retried when it falls short."));
  const cards = h("ul", { class: "kits", "aria-label": "Kits" },
    kits.length ? kits.map(kitCard) : h("li", { class: "muted" }, "No kits yet."));
  const form = await kitForm({ onSaved: (kit) => { location.hash = `#/kits?kit=${encodeURIComponent(kit.name)}`; } });
  root.append(cards, form);
}

function kitCard(kit) {
  return h("li", { class: "kit card", "data-kit": kit.name },
    h("h2", {}, h("a", { href: `#/kits?kit=${encodeURIComponent(kit.name)}` }, kit.name)),
    h("p", { class: "muted kit-line" }, `version ${kit.version} · ${kit.references.length} reference(s) in ${kit.collection}`),
    swatches(kit.palette),
    h("p", { class: "muted help" }, checksText(kit.checks)),
    kit.style ? h("p", { class: "kit-style" }, kit.style) : null);
}

async function detail(root, name) {
  const heading = h("h1", {}, `Kit ${name}`);
  const status = h("p", { class: "status", role: "status", hidden: true });
  const actions = h("div", { class: "row" });
  const editing = h("div", {});
  const versions = h("section", { class: "versions", "aria-labelledby": "versions-title" });
  const audit = h("div", {});
  root.append(h("p", {}, h("a", { href: "#/kits" }, "← All kits")), heading, actions, status, editing, versions, audit);

  async function show() {
    const { data } = await getJSON(paths.kitVersions(name));
    const latest = data.reduce((a, b) => (b.version > a.version ? b : a));
    heading.textContent = `Kit ${name}${latest.deleted ? " (deleted)" : ""}`;
    const newest = [...data].sort((a, b) => b.version - a.version);
    versions.replaceChildren(h("h2", { id: "versions-title" }, `${data.length} version(s)`),
      h("ol", { class: "version-list", reversed: true }, newest.map(versionCard)));
    actions.replaceChildren();
    if (latest.deleted) return;
    actions.append(
      h("button", { type: "button", class: "primary", onclick: async (event) => {
        event.target.disabled = true;
        editing.replaceChildren(await kitForm({ kit: latest, onSaved: async (kit) => {
          editing.replaceChildren();
          say(status, `Saved version ${kit.version}.`, "ok");
          await busyWhile(versions, show);
        } }));
        editing.querySelector("textarea")?.focus();
      } }, "New version"),
      h("button", { type: "button", class: "danger", onclick: async () => {
        const sure = await confirmAction({ title: `Delete kit ${name}?`, action: "Delete",
          text: ["It can no longer be used for new generations.", `Its versions stay readable as ${name}@N for the lineage of what they made.`] });
        if (!sure) return;
        try {
          await deleteRequest(paths.kit(name));
          location.hash = "#/kits";
        } catch (error) {
          say(status, String(error), "error");
        }
      } }, "Delete kit"));
    audit.replaceChildren(await auditPanel(latest));
  }
  await busyWhile(versions, show);
}

function versionCard(kit) {
  return h("li", { class: "version card", "data-version": String(kit.version) },
    h("h3", {}, `${kit.name}@${kit.version}`, h("span", { class: "muted" }, ` · ${when(kit.created_at)}`),
      kit.deleted ? h("span", { class: "warn" }, " · deleted") : null),
    swatches(kit.palette),
    h("ul", { class: "chips kit-refs", "aria-label": `References of version ${kit.version}` },
      kit.references.map((id) => h("li", {}, refChip(kit.collection, { asset_id: id })))),
    h("p", { class: "muted help" }, `In ${kit.collection} · ${checksText(kit.checks)}`),
    kit.style ? h("p", { class: "kit-style" }, kit.style) : null);
}
