// The jobs page: a table kept up to date from GET /v1/events (server-sent events) and a preview
// grid of a dataset's first samples. Plain DOM, no dependencies; see app/routers/ui.py.
"use strict";

(() => {
  const PREVIEW_SAMPLES = 8;
  const RETRY_MS = 5000;

  const $ = (selector) => document.querySelector(selector);
  const tbody = $("#jobs tbody");
  const preview = $("#preview");
  const jobs = new Map(); // id -> job (the body of GET /v1/jobs/{id})
  let selected = null; // id of the job in the preview
  let shownSamples = ""; // the indices the preview grid shows, joined
  let source = null;

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children);
    return node;
  }

  function rate(job) {
    const r = job.throughput;
    if (r === null || r === undefined || !Number.isFinite(r)) return "–";
    return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
  }

  function bytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  // ----- the table -----------------------------------------------------------------------------
  function buildRow(job) {
    const button = el("button", { type: "button", class: "job-id", "aria-controls": "preview" }, job.id);
    button.addEventListener("click", () => openPreview(job.id, true));
    const created = el("time", { datetime: job.created }, dateFormat.format(new Date(job.created)));
    return el("tr", { "data-job-id": job.id },
      el("th", { scope: "row" }, button),
      el("td", { class: "family" }, job.family),
      el("td", { class: "status" }, el("span", { class: "badge" }), el("span", { class: "error" })),
      el("td", { class: "progress" },
        el("progress", { "aria-label": `Samples done of job ${job.id}` }),
        el("span", { class: "count" })),
      el("td", { class: "rate num" }),
      el("td", { class: "created" }, created));
  }

  function updateRow(row, job) {
    const { samples_done: done, samples_total: total } = job.progress;
    row.dataset.status = job.status;
    row.querySelector(".badge").textContent = job.status;
    row.querySelector(".error").textContent = job.error ? job.error : "";
    const bar = row.querySelector("progress");
    bar.max = Math.max(total, 1);
    bar.value = done;
    row.querySelector(".count").textContent = `${done} / ${total}`;
    row.querySelector(".rate").textContent = rate(job);
    row.querySelector(".job-id").setAttribute("aria-current", job.id === selected ? "true" : "false");
  }

  function upsert(job) {
    const previous = jobs.get(job.id);
    jobs.set(job.id, job);
    let row = tbody.querySelector(`tr[data-job-id="${job.id}"]`);
    if (!row) {
      row = buildRow(job);
      const created = Date.parse(job.created);
      const after = [...tbody.rows].find((r) => Date.parse(jobs.get(r.dataset.jobId).created) < created);
      tbody.insertBefore(row, after || null);
    }
    updateRow(row, job);
    $("#empty").hidden = jobs.size > 0;
    if (job.id === selected && previous && (previous.status !== job.status
        || previous.progress.shards_done !== job.progress.shards_done)) {
      openPreview(job.id, false);
    }
  }

  function remove(id) {
    jobs.delete(id);
    tbody.querySelector(`tr[data-job-id="${id}"]`)?.remove();
    $("#empty").hidden = jobs.size > 0;
    if (id === selected) closePreview();
  }

  function replaceAll(list) {
    const ids = new Set(list.map((job) => job.id));
    for (const id of [...jobs.keys()]) if (!ids.has(id)) remove(id);
    for (const job of list) upsert(job);
    $("#empty").hidden = jobs.size > 0;
  }

  // ----- the live stream -----------------------------------------------------------------------
  function setConnection(state, text) {
    const status = $("#connection");
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    setConnection("connecting", "Connecting…");
    source = new EventSource("/v1/events");
    source.addEventListener("snapshot", (event) => {
      replaceAll(JSON.parse(event.data).data);
      setConnection("live", "Live");
    });
    source.addEventListener("job", (event) => upsert(JSON.parse(event.data)));
    source.addEventListener("remove", (event) => remove(JSON.parse(event.data).id));
    source.addEventListener("unavailable", () => setConnection("down", "Job store unavailable; retrying…"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) refused();
      else setConnection("connecting", "Reconnecting…");
    });
  }

  // EventSource gives up on an answer other than 200: a lost session goes to the login form, anything
  // else (a 503 while Redis restarts) is tried again in a while.
  async function refused() {
    source.close();
    let status = 0;
    try {
      status = (await fetch("/v1/jobs?page_size=1", { cache: "no-store" })).status;
    } catch (_) { /* the server is unreachable: retry below */ }
    if (status === 401 || status === 403) {
      window.location.assign("/login?next=/");
      return;
    }
    setConnection("down", "Connection lost; retrying…");
    setTimeout(connect, RETRY_MS);
  }

  // ----- the preview ---------------------------------------------------------------------------
  function datasetUrl(id, rest = "") {
    return `/v1/datasets/${encodeURIComponent(id)}${rest}`;
  }

  function fileUrl(id, path) {
    return datasetUrl(id, `/files/${path.split("/").map(encodeURIComponent).join("/")}`);
  }

  function closePreview() {
    selected = null;
    shownSamples = "";
    preview.hidden = true;
    for (const b of tbody.querySelectorAll(".job-id")) b.setAttribute("aria-current", "false");
  }

  function showFiles(id, files) {
    const list = $("#files");
    list.replaceChildren(...files.map((f) => el("li", {},
      el("a", { href: fileUrl(id, f.path) }, f.path), " ", el("span", { class: "size" }, bytes(f.bytes)))));
    $("#files-count").textContent = String(files.length);
    $("#files-box").hidden = files.length === 0;
  }

  function showSamples(id, indices) {
    const key = `${id}:${indices.join(",")}`;
    if (key === shownSamples) return;
    shownSamples = key;
    $("#samples").replaceChildren(...indices.map((i) => {
      const png = datasetUrl(id, `/samples/${i}.png`);
      const img = el("img", { src: png, alt: `Sample ${i}: input fields and solution`, decoding: "async" });
      const figure = el("figure", { class: "sample", "data-index": String(i) },
        el("a", { href: png, class: "image" }, img),
        el("figcaption", {}, `Sample ${i} · `, el("a", { href: datasetUrl(id, `/samples/${i}`) }, "JSON")));
      img.addEventListener("error", () => figure.classList.add("failed"));
      return figure;
    }));
  }

  // { status, body }; status 0 when the server did not answer
  async function getJson(url) {
    try {
      const response = await fetch(url, { cache: "no-store" });
      return { status: response.status, body: await response.json().catch(() => ({})) };
    } catch (_) {
      return { status: 0, body: {} };
    }
  }

  async function openPreview(id, focus) {
    if (id !== selected) shownSamples = "";
    selected = id;
    for (const b of tbody.querySelectorAll(".job-id")) {
      b.setAttribute("aria-current", b.textContent === id ? "true" : "false");
    }
    preview.hidden = false;
    $("#preview-id").textContent = id;
    $("#manifest-link").href = datasetUrl(id);
    if (focus) $("#preview-title").focus();

    const summary = $("#preview-summary");
    const manifest = await getJson(datasetUrl(id));
    if (selected !== id) return;
    $("#manifest-link").parentElement.hidden = manifest.status !== 200;
    if (manifest.status !== 200) {
      summary.textContent = manifest.status === 409
        ? "No shard is finished yet: samples appear here as shards finish."
        : `The dataset cannot be read: ${manifest.body.detail || "the server did not answer"}.`;
      showFiles(id, []);
      showSamples(id, []);
      return;
    }
    const m = manifest.body;
    showFiles(id, m.files);
    const samples = await getJson(datasetUrl(id, `/samples?limit=${PREVIEW_SAMPLES}`));
    if (selected !== id) return;
    const indices = samples.status === 200 ? samples.body.indices : [];
    const state = m.complete ? "complete" : `partial: ${m.shards_final} of ${m.shards_total} shards finished`;
    summary.textContent = `${m.family}, grid ${m.grid.join(" × ")}, ${m.samples} samples (${state}). `
      + (indices.length ? `The first ${indices.length} readable samples:` : "No sample is readable yet.");
    showSamples(id, indices);
  }

  // ----- start ---------------------------------------------------------------------------------
  if (document.body.dataset.auth === "on") {
    $("#principal").textContent = document.body.dataset.principal;
    $("#who").hidden = false;
    $("#logout").addEventListener("click", async () => {
      source?.close();
      await fetch("/v1/session", { method: "DELETE" }).catch(() => {});
      window.location.assign("/login?next=/");
    });
  }
  connect();
})();
