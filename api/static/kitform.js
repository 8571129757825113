// The form that makes a kit (POST /v1/kits) or a new version of one (PUT /v1/kits/{name}):
// references from the hits picked in Search, a style, palette colours with swatches, the
// checks. Every limit and pattern comes from the API's own schema (KitCreate, KitChecks).

import { getJSON, paths, postJSON, putJSON, requestSchema } from "./api.js";
import { h, say, smallThumb } from "./dom.js";
import { clearPicks, picks } from "./picks.js";

const bound = (property, low) => property[low ? "minimum" : "maximum"] ?? property[low ? "ge" : "le"];

// kit: the version to start from (a PUT), or null (a new kit from the picks).
export async function kitForm({ kit = null, onSaved }) {
  const schema = await requestSchema("KitCreate");
  const checks = (await requestSchema("KitChecks")).properties;
  const props = schema.properties;
  const picked = picks();
  const state = {
    collection: kit?.collection ?? picked.collection,
    references: kit ? kit.references.map((id) => ({ asset_id: id })) : picked.assets,
    palette: [...(kit?.palette ?? [])],
  };
  const prefix = kit ? `kit-${kit.name}` : "kit-new";
  const status = h("p", { class: "status", role: "status", hidden: true });

  const name = kit ? null : h("input", { id: `${prefix}-name`, required: true, autocomplete: "off",
    maxlength: props.name.maxLength, placeholder: props.name.examples?.[0] ?? "",
    oninput: () => name.setCustomValidity(
      new RegExp(props.name.pattern).test(name.value) ? "" : `Use ${props.name.description}.`) });
  const style = h("textarea", { id: `${prefix}-style`, rows: 2, maxlength: props.style.maxLength,
    placeholder: "soft morning light, linen textures" }, kit?.style ?? "");

  const refList = h("ul", { class: "chips kit-refs", "aria-label": "References" });
  function showReferences() {
    refList.replaceChildren(...state.references.map((ref, n) => h("li", {}, refChip(state.collection, ref,
      h("button", { type: "button", class: "quiet", "aria-label": `Remove reference ${n + 1}`, onclick: () => {
        state.references.splice(n, 1);
        showReferences();
      } }, "×")))));
    if (!state.references.length) {
      refList.append(h("li", { class: "muted" }, "None yet: tick ", h("strong", {}, "Reference"),
        " on hits in ", h("a", { href: "#/search" }, "Search"), `, ${props.references.minItems}–${props.references.maxItems} of one collection.`));
    }
  }
  const usePicks = kit && picked.assets.length ? h("button", { type: "button", onclick: () => {
    state.collection = picked.collection;
    state.references = picked.assets;
    collectionLine.textContent = `In ${state.collection}`;
    showReferences();
  } }, `Use the ${picked.assets.length} hit(s) picked in Search instead`) : null;
  const collectionLine = h("p", { class: "muted help" }, state.collection ? `In ${state.collection}` : "");
  showReferences();

  const paletteList = h("ol", { class: "palette-rows" });
  const addColour = h("button", { type: "button", onclick: () => {
    state.palette.push("#000000");
    showPalette();
    paletteList.querySelector("li:last-child input[type=text]")?.focus();
  } }, "Add a colour");
  const colourPattern = props.palette.items.pattern;
  function showPalette() {
    paletteList.replaceChildren(...state.palette.map((colour, n) => {
      const id = `${prefix}-colour-${n + 1}`;
      const valid = (value) => new RegExp(colourPattern).test(value);
      const picker = h("input", { type: "color", value: valid(colour) ? colour.toLowerCase() : "#000000",
        "aria-label": `Pick colour ${n + 1}`, oninput: () => {
          state.palette[n] = picker.value.toUpperCase();
          text.value = state.palette[n];
        } });
      const text = h("input", { type: "text", id, value: colour, required: true, size: 8,
        placeholder: props.palette.items.examples?.[0] ?? "#RRGGBB", oninput: () => {
          state.palette[n] = text.value.trim();
          text.setCustomValidity(valid(state.palette[n]) ? "" : props.palette.items.description);
          if (valid(state.palette[n])) picker.value = state.palette[n].toLowerCase();
        } });
      return h("li", { class: "row palette-row" }, picker,
        h("label", { for: id, class: "visually-hidden" }, `Colour ${n + 1}`), text,
        h("button", { type: "button", class: "quiet", "aria-label": `Remove colour ${n + 1}`, onclick: () => {
          state.palette.splice(n, 1);
          showPalette();
        } }, "Remove"));
    }));
    addColour.disabled = state.palette.length >= (props.palette.maxItems ?? Infinity);
  }
  showPalette();

  const numberInput = (key, step, value) => h("input", { id: `${prefix}-${key}`, type: "number", step,
    min: bound(checks[key], true), max: bound(checks[key], false), value: value ?? "" });
  const minSimilarity = numberInput("min_similarity", "0.01", kit?.checks?.min_similarity);
  const maxDistance = numberInput("max_palette_distance", "0.1", kit?.checks?.max_palette_distance);
  const attempts = numberInput("attempts", "1", kit?.checks?.attempts ?? checks.attempts.default);
  attempts.required = true;
  const field = (input, label, help) => h("div", { class: "field" },
    h("label", { for: input.id }, label), input, help ? h("small", { class: "muted" }, help) : null);

  const submit = h("button", { type: "submit", class: "primary" }, kit ? `Save as version ${kit.version + 1}` : "Create kit");
  const form = h("form", { class: "stack kit-form card", onsubmit: async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    const body = { collection: state.collection, references: state.references.map((r) => r.asset_id),
      palette: state.palette, checks: { attempts: Number(attempts.value) } };
    if (style.value.trim()) body.style = style.value.trim();
    if (minSimilarity.value !== "") body.checks.min_similarity = Number(minSimilarity.value);
    if (maxDistance.value !== "") body.checks.max_palette_distance = Number(maxDistance.value);
    submit.disabled = true;
    say(status, "Saving…");
    try {
      const saved = kit ? await putJSON(paths.kit(kit.name), body)
        : await postJSON(paths.kits(), { name: name.value, ...body });
      if (!kit) clearPicks();
      say(status, "");
      await onSaved(saved);
    } catch (error) {
      say(status, String(error), "error");
    } finally {
      submit.disabled = false;
    }
  } },
  h("h2", {}, kit ? `New version of ${kit.name}` : "New kit"),
  name ? field(name, "Name", props.name.description) : null,
  h("fieldset", {}, h("legend", {}, "References"), collectionLine, refList, usePicks),
  field(style, "Style", props.style.description),
  h("fieldset", { class: "palette" }, h("legend", {}, "Palette"),
    h("p", { class: "muted help" }, `Up to ${props.palette.maxItems} colours, ${props.palette.items.description}.`),
    paletteList, h("div", { class: "row" }, addColour)),
  h("fieldset", { class: "checks" }, h("legend", {}, "Checks"),
    h("div", { class: "row" },
      field(minSimilarity, "Min similarity", "left empty: not checked"),
      field(maxDistance, "Max palette distance", "left empty: not checked"),
      field(attempts, "Attempts", `${bound(checks.attempts, true)}–${bound(checks.attempts, false)}`))),
  h("div", { class: "row" }, submit), status);
  return form;
}

// A reference as a chip: a picked hit has its thumbnail and name; a kit's asset id is looked up.
export function refChip(collection, ref, ...extra) {
  const name = h("span", { class: "name" }, ref.filename || ref.asset_id.slice(0, 12) + "…");
  const thumb = ref.thumbnail_url ? smallThumb(ref.thumbnail_url) : h("span", { class: "ref-slot" });
  if (!ref.thumbnail_url) {
    getJSON(paths.asset(collection, ref.asset_id)).then((asset) => {
      thumb.replaceWith(smallThumb(asset.thumbnail_url));
      name.textContent = asset.filename || name.textContent;
    }, () => {});
  }
  return h("span", { class: "chip", title: ref.asset_id }, thumb, name, extra);
}
