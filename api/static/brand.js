// Brand kits as the pages show them: palette swatches, a kit's checks in words, and an
// output's score badge (passed / off-brand, its two numbers and the attempts it took).

import { h } from "./dom.js";

// One swatch per palette colour, each named by its hex value (for screen readers too).
export function swatches(palette) {
  if (!palette?.length) return h("p", { class: "muted swatches-none" }, "No palette");
  return h("ul", { class: "swatches", "aria-label": "Palette" }, palette.map((colour) =>
    h("li", { class: "swatch", title: colour },
      h("span", { class: "chip-colour", style: `background:${colour}`, "aria-hidden": "true" }),
      h("code", {}, colour))));
}

export function checksText(checks = {}) {
  const parts = [];
  if (checks.min_similarity != null) parts.push(`similarity ≥ ${checks.min_similarity}`);
  if (checks.max_palette_distance != null) parts.push(`palette distance ≤ ${checks.max_palette_distance}`);
  parts.push(`${checks.attempts ?? 1} attempt(s)`);
  return parts.join(" · ");
}

const number = (value, digits) => (value == null ? "–" : value.toFixed(digits));

// An image's BrandScore {kit, similarity, palette_distance, passed, code}; the attempts are
// counted on its item's (or the single form's result's) summary.
export function brandBadge(score, summary = null) {
  if (!score) return null;
  const attempts = summary?.attempts ?? score.attempts;
  const verdict = score.passed ? "passed" : "off-brand";
  return h("div", { class: `brand-badge ${score.passed ? "passed" : "off-brand"}`,
    "data-passed": String(score.passed), title: score.code ?? verdict },
  h("strong", { class: "verdict" }, verdict),
  h("span", { class: "similarity" }, `similarity ${number(score.similarity, 3)}`),
  h("span", { class: "palette-distance" }, `palette ${number(score.palette_distance, 1)}`),
  h("span", { class: "attempts" }, `${attempts} attempt${attempts === 1 ? "" : "s"}`),
  h("span", { class: "muted kit-ref" }, score.kit));
}
