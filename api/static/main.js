// Start-up: ask for the API key when the server wants one, read the contract (/v1/meta),
// then show the page the address names (#/search, #/library?collection=…, …).

import { apiKey, loadMeta, onKeyNeeded } from "./api.js";
import { h, say } from "./dom.js";
import * as duplicates from "./duplicates.js";
import * as generate from "./generate.js";
import * as ingest from "./ingest.js";
import * as jobs from "./jobs.js";
import * as kits from "./kits.js";
import * as library from "./library.js";
import * as reindex from "./reindex.js";
import * as search from "./search.js";

const PAGES = { search, library, ingest, generate, kits, jobs, reindex, duplicates };
const main = document.getElementById("main");
let leave = () => {};

function askForKey(problem) {
  const dialog = document.getElementById("key-dialog");
  const error = document.getElementById("key-error");
  const input = document.getElementById("key-input");
  error.textContent = problem;
  error.hidden = !problem;
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(input.value.trim() || null), { once: true });
    dialog.showModal();
  });
}

function showKeyButton() {
  const button = document.getElementById("forget-key");
  button.hidden = !apiKey.get();
  button.onclick = () => {
    apiKey.clear();
    location.reload();
  };
}

async function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const name = PAGES[path] ? path : "search";
  leave();
  leave = () => {};
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${PAGES[name].title ?? name[0].toUpperCase() + name.slice(1)} · assetrag`;
  const page = h("div", { class: "page", "data-page": name });
  main.replaceChildren(page);
  try {
    leave = (await PAGES[name].mount(page, new URLSearchParams(query))) || leave;
  } catch (error) {
    page.append(h("p", { class: "status error", role: "alert" }, String(error)));
  }
  showKeyButton();
}

async function start() {
  onKeyNeeded(askForKey);
  // A file dropped beside a drop zone must not replace the app with the file.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  try {
    await loadMeta();
  } catch (error) {
    const why = error.status === 401
      ? "This server needs an API key: reload the page to enter one."
      : `The API did not answer: ${error}`;
    say(main.querySelector(".status"), why, "error");
    return;
  }
  window.addEventListener("hashchange", () => {
    route();
    main.focus({ preventScroll: true });
  });
  await route();
}

start();
