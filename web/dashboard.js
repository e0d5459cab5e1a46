// The fleet dashboard (/dashboard): every published bundle, what its channels serve, how its
// versions do on devices (adoption, latency, errors, drift), remote logs, and the release controls.
//
// It reads and acts only through the admin API (/api/admin/*, server/admin_api.py) with the admin
// token from `waystation admin token`: asked for once, kept in this tab's sessionStorage, sent as
// a Bearer header (never in a URL). Everything is refreshed every few seconds. Charts are uPlot,
// self-hosted by the site build (vendor/uplot.js). An operator's page: no part of the offline app
// shell, the service worker never precaches it.

import uPlot from "./vendor/uplot.js";

export { rolloutLabel, versionColor };

/**
 * @typedef {{version: string, parent: string | null, published_at: string, revoked_at: string | null, revoke_reason: string | null}} Version
 * @typedef {{id: number, channel: string, version: string, percent: number, created_at: string, updated_at: string,
 *            rolled_back_at: string | null, halted_at: string | null, halt_reason: string | null, halt_if: string | null}} Release
 * @typedef {{version: string | null, percent: number | null, share: number}} Share
 * @typedef {{channel: string, releases: Release[], logging: {share: number, level: string} | null, shares: Share[]}} Channel
 * @typedef {{calls: number, errors: number, error_rate: number | null, p50: number | null, p95: number | null, p99: number | null}} Calls
 * @typedef {Calls & {devices: number, functions: Record<string, Calls>, signals: Record<string, {n: number, counts: number[], psi: number | null}>}} Stats
 * @typedef {{hour: string, version: string, devices: number, calls: number, errors: number, p95: number | null}} Hour
 * @typedef {{received: number | string, version: string, t: number, level: string, logger: string, message: string}} LogLine
 * @typedef {{summary: {versions: Record<string, Stats>}, timeline: Hour[], logs: LogLine[]}} Telemetry
 * @typedef {{name: string, versions: Version[], channels: Channel[], halted: Release[], telemetry?: Telemetry | null}} Bundle
 */

const TOKEN_KEY = "waystation.adminToken";
const REFRESH_MS = 5000;
// One colour per version, by publishing order, so a version looks the same in every chart and bar.
const PALETTE = ["#4c6ef5", "#12b886", "#f59f00", "#e64980", "#7950f2", "#15aabf", "#fa5252", "#82c91e"];
const CHART_HEIGHT = 200;
const PSI_WARN = 0.1; // the usual reading of the population stability index: < 0.1 stable,
const PSI_BAD = 0.25; // 0.1-0.25 some shift, > 0.25 a shift worth acting on

class Unauthorized extends Error {}

/** @type {{token: string | null, views: Map<string, BundleView>, timer: number, refreshes: number}} */
const state = { token: sessionStorage.getItem(TOKEN_KEY), views: new Map(), timer: 0, refreshes: 0 };

/**
 * An element with properties (class, text, hidden, dataset, on* handlers) and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} [props]
 * @param {(Node | string | null | undefined)[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") {
      for (const [name, v] of Object.entries(value)) if (v !== undefined) el.style[name] = v;
    } else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el) /** @type {any} */ (el)[key] = value;
    else /** @type {HTMLElement} */ (el).setAttribute(key, String(value));
  }
  el.append(...children.filter((c) => c !== null && c !== undefined));
  return el;
}

/**
 * A call to the admin API: the parsed answer, or an error with the server's message.
 * @param {string} path below /api/admin
 * @param {object} [body] POSTed as JSON when given
 */
async function api(path, body) {
  /** @type {Record<string, string>} */
  const headers = { authorization: `Bearer ${state.token}` };
  if (body) headers["content-type"] = "application/json";
  const response = await fetch(`/api/admin${path}`, {
    method: body ? "POST" : "GET", headers, cache: "no-store", body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) throw new Unauthorized(answer.error ?? `HTTP ${response.status}`);
  if (!response.ok) throw new Error(answer.error ?? `HTTP ${response.status} from /api/admin${path}`);
  return answer;
}

/** @param {string} version @param {Version[]} versions newest first, as the API lists them */
function versionColor(version, versions) {
  const order = versions.map((v) => v.version).reverse().indexOf(version);
  return order < 0 ? "#868e96" : PALETTE[order % PALETTE.length];
}

/** @param {Share} share */
function rolloutLabel(share) {
  if (share.version === null) return `no release includes them · ${share.share}%`;
  return share.percent === 100 ? `${share.version} · ${share.share}%` : `${share.version} · ${share.share}% (release at ${share.percent}%)`;
}

/** @param {number | null | undefined} ms */
function ms(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** @param {number | null | undefined} rate a fraction */
function percent(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(rate < 0.1 ? 2 : 1)}%`;
}

/** @param {string | number | null} when an ISO time or ms since the epoch */
function time(when) {
  if (when === null || when === undefined) return "";
  const date = new Date(typeof when === "number" ? when : when);
  return isNaN(date.getTime()) ? String(when) : date.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

/** @param {number | null | undefined} psi */
function psiClass(psi) {
  if (psi === null || psi === undefined) return "none";
  return psi >= PSI_BAD ? "bad" : psi >= PSI_WARN ? "warn" : "ok";
}

/** A time chart of one number per version per hour (uPlot), redrawn in place on each refresh. */
class TimeChart {
  /**
   * @param {string} title
   * @param {(hour: Hour) => number | null} pick the plotted number of one version's hour
   * @param {(value: number) => string} format the axis and legend's text for a value
   */
  constructor(title, pick, format) {
    this.pick = pick;
    this.format = format;
    this.nodata = h("p", { class: "nodata", text: "no reports in this period yet" });
    this.box = h("div", { class: "chart" }, this.nodata);
    this.panel = h("section", { class: "panel span-4", dataset: { chart: title } }, h("h3", { text: title }), this.box);
    /** @type {uPlot | null} */
    this.plot = null;
    this.key = "";
  }

  /** @param {Hour[]} timeline @param {Version[]} versions */
  update(timeline, versions) {
    const hours = [...new Set(timeline.map((row) => Date.parse(row.hour) / 1000))].sort((a, b) => a - b);
    const shown = versions.map((v) => v.version).filter((v) => timeline.some((row) => row.version === v)).reverse();
    /** @type {(number | null)[][]} */
    const series = shown.map(() => hours.map(() => null));
    for (const row of timeline) {
      const i = shown.indexOf(row.version);
      if (i >= 0) series[i][hours.indexOf(Date.parse(row.hour) / 1000)] = this.pick(row);
    }
    this.nodata.hidden = hours.length > 0;
    if (!hours.length) { // no axes around nothing: the note says it
      this.plot?.destroy();
      this.plot = null;
      this.key = "";
      return;
    }
    const data = /** @type {uPlot.AlignedData} */ ([hours, ...series]);
    const key = shown.join(",");
    if (this.plot && key === this.key) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.key = key;
    this.plot = new uPlot(this.options(shown, versions), data, this.box);
  }

  /** @param {string[]} shown @param {Version[]} versions @returns {uPlot.Options} */
  options(shown, versions) {
    const axis = { stroke: "#5b6475", grid: { stroke: "#eef0f5", width: 1 }, ticks: { stroke: "#dfe3ec", width: 1 } };
    return {
      width: this.width(), height: CHART_HEIGHT,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [axis, { ...axis, size: 64, values: (_u, ticks) => ticks.map((v) => this.format(v)) }],
      legend: { live: true },
      series: [
        {},
        ...shown.map((version) => {
          const color = versionColor(version, versions);
          return {
            label: version, stroke: color, fill: `${color}1f`, width: 2, spanGaps: true,
            points: { show: true, size: 5, fill: color }, value: (_u, v) => (v === null ? "–" : this.format(v)),
          };
        }),
      ],
    };
  }

  width() {
    return Math.max(240, this.box.clientWidth || this.panel.clientWidth - 36);
  }

  resize() {
    this.plot?.setSize({ width: this.width(), height: CHART_HEIGHT });
  }
}

/** One bundle's part of the page: built once, its numbers replaced on every refresh. */
class BundleView {
  /** @param {string} name */
  constructor(name) {
    this.name = name;
    /** @type {Bundle | null} */
    this.bundle = null;
    this.facts = h("p", { class: "facts" });
    this.tiles = h("div", { class: "tiles span-12" });
    this.channels = h("div");
    this.versionsBody = h("tbody");
    this.events = h("ul", { class: "events" });
    this.logsBody = h("tbody");
    this.charts = [
      new TimeChart("Adoption: devices per hour", (row) => row.devices, (v) => String(Math.round(v))),
      new TimeChart("p95 latency", (row) => row.p95, (v) => ms(v)),
      new TimeChart("Error rate", (row) => (row.calls ? row.errors / row.calls : null), (v) => percent(v)),
    ];
    this.controls = new ReleaseControls(name, () => this.bundle, () => refresh());
    const versionsTable = h("table", { class: "versions" },
      h("thead", {}, h("tr", {}, ...["Version", "State", "Devices", "Calls", "Errors", "p50", "p95", "p99", "Latency", "Drift (PSI)"]
        .map((title, i) => h("th", { text: title, class: i >= 2 && i <= 7 ? "num" : undefined })))),
      this.versionsBody);
    this.root = h("section", { class: "bundle", dataset: { bundle: name } },
      h("h2", { text: name }), this.facts,
      h("div", { class: "grid" },
        this.tiles,
        h("section", { class: "panel span-6 rollout" }, h("h3", { text: "Rollout" }), this.channels),
        h("section", { class: "panel span-6" }, h("h3", { text: "Release controls" }), this.controls.root),
        ...this.charts.map((chart) => chart.panel),
        h("section", { class: "panel span-12" }, h("h3", { text: "Versions" }), h("div", { class: "scroll" }, versionsTable)),
        h("section", { class: "panel span-4" }, h("h3", { text: "Halted and revoked" }), this.events),
        h("section", { class: "panel span-8" }, h("h3", { text: "Recent remote logs" }),
          h("div", { class: "scroll" }, h("table", { class: "logs" },
            h("thead", {}, h("tr", {}, ...["Time", "Version", "Level", "Logger", "Message"].map((t) => h("th", { text: t })))),
            this.logsBody)))));
  }

  /** @param {Bundle} bundle */
  update(bundle) {
    this.bundle = bundle;
    const stats = bundle.telemetry?.summary?.versions ?? {};
    const live = bundle.channels.flatMap((c) => c.shares.filter((s) => s.version)).length;
    this.facts.textContent = `${bundle.versions.length} version(s) published · ${bundle.channels.length} channel(s) · ` +
      `${live} release(s) serving devices`;
    this.updateTiles(bundle, stats);
    this.channels.replaceChildren(...bundle.channels.map((channel) => this.channelRow(channel, bundle.versions)));
    if (!bundle.channels.length) this.channels.append(h("p", { class: "quiet", text: "not released on any channel" }));
    this.updateVersions(bundle, stats);
    this.updateEvents(bundle);
    this.updateLogs(bundle.telemetry?.logs ?? [], bundle.versions);
    for (const chart of this.charts) chart.update(bundle.telemetry?.timeline ?? [], bundle.versions);
    this.controls.update(bundle);
  }

  /** @param {Bundle} bundle @param {Record<string, Stats>} stats */
  updateTiles(bundle, stats) {
    const all = Object.values(stats);
    const calls = all.reduce((n, s) => n + s.calls, 0);
    const errors = all.reduce((n, s) => n + s.errors, 0);
    const newest = bundle.channels.flatMap((c) => c.shares).find((s) => s.version)?.version;
    const p95 = newest ? stats[newest]?.p95 : null;
    const rate = calls ? errors / calls : null;
    /** @type {[string, string, string?][]} */
    const tiles = [
      ["Devices reporting", String(all.reduce((n, s) => n + s.devices, 0))],
      ["Calls", calls.toLocaleString()],
      ["Error rate", percent(rate), rate !== null && rate > 0.05 ? "bad" : rate !== null && rate > 0.01 ? "warn" : undefined],
      [`p95 of ${newest ?? "–"}`, ms(p95)],
      ["Revoked versions", String(bundle.versions.filter((v) => v.revoked_at).length)],
    ];
    this.tiles.replaceChildren(...tiles.map(([label, value, level]) =>
      h("div", { class: "tile" }, h("div", { class: "label", text: label }), h("div", { class: `value ${level ?? ""}`, text: value }))));
  }

  /** @param {Channel} channel @param {Version[]} versions */
  channelRow(channel, versions) {
    const logging = channel.logging ? `remote logs from ${channel.logging.share}% at ${channel.logging.level}+` : "remote logs off";
    const segments = channel.shares.map((share) => h("div", {
      class: share.version ? "seg" : "seg none", title: rolloutLabel(share), text: share.share >= 8 ? `${share.share}%` : "",
      dataset: { version: share.version ?? "", share: String(share.share) },
      style: { width: `${share.share}%`, background: share.version ? versionColor(share.version, versions) : undefined },
    }));
    const legend = channel.shares.map((share) => h("span", {},
      h("span", { class: "swatch", style: { background: share.version ? versionColor(share.version, versions) : "#d5dae4" } }),
      rolloutLabel(share)));
    return h("div", { class: "channel", dataset: { channel: channel.channel } },
      h("div", { class: "name" }, h("span", { text: channel.channel }), h("span", { class: "logging", text: logging })),
      h("div", { class: "stack" }, ...segments), h("div", { class: "legend" }, ...legend));
  }

  /** @param {Bundle} bundle @param {Record<string, Stats>} stats */
  updateVersions(bundle, stats) {
    const slowest = Math.max(1, ...Object.values(stats).map((s) => s.p99 ?? 0));
    const worstRate = Math.max(0.01, ...Object.values(stats).map((s) => s.error_rate ?? 0));
    this.versionsBody.replaceChildren(...bundle.versions.map((version) => {
      const s = stats[version.version];
      const color = versionColor(version.version, bundle.versions);
      return h("tr", { dataset: { version: version.version } },
        h("td", {}, h("span", { class: "swatch", style: { background: color } }), h("strong", { text: version.version })),
        h("td", {}, this.stateBadge(version, bundle)),
        h("td", { class: "num", text: s ? String(s.devices) : "–" }),
        h("td", { class: "num", text: s ? s.calls.toLocaleString() : "–" }),
        h("td", { class: "num" }, h("span", { class: "rate" }, percent(s?.error_rate),
          s?.error_rate ? h("span", { class: "bar", style: { width: `${(40 * s.error_rate) / worstRate}px` } }) : null)),
        h("td", { class: "num p50", text: ms(s?.p50) }),
        h("td", { class: "num p95", text: ms(s?.p95) }),
        h("td", { class: "num p99", text: ms(s?.p99) }),
        h("td", {}, s?.p50 != null ? latencyStrip(s, slowest, color) : null),
        h("td", {}, driftChips(s, color)));
    }));
  }

  /** @param {Version} version @param {Bundle} bundle */
  stateBadge(version, bundle) {
    if (version.revoked_at) return h("span", { class: "badge revoked", text: "revoked", title: version.revoke_reason || "no reason given" });
    const serving = bundle.channels.flatMap((c) => c.shares.filter((s) => s.version === version.version).map((s) => `${s.share}% of ${c.channel}`));
    if (serving.length) return h("span", { class: "badge serving", text: serving.join(", ") });
    const halted = bundle.halted.find((r) => r.version === version.version);
    if (halted) return h("span", { class: "badge halted", text: "halted", title: halted.halt_reason ?? "" });
    return h("span", { class: "badge", text: "not released" });
  }

  /** @param {Bundle} bundle */
  updateEvents(bundle) {
    const items = [
      ...bundle.halted.map((r) => ({ at: r.halted_at ?? "", el: h("li", { class: "halted" },
        h("strong", { text: `${r.version} halted on ${r.channel}` }), h("span", { class: "when", text: time(r.halted_at) }),
        h("div", { text: r.halt_reason || "no reason recorded" })) })),
      ...bundle.versions.filter((v) => v.revoked_at).map((v) => ({ at: v.revoked_at ?? "", el: h("li", { class: "revoked" },
        h("strong", { text: `${v.version} revoked` }), h("span", { class: "when", text: time(v.revoked_at) }),
        h("div", { text: v.revoke_reason || "no reason given" })) })),
    ].sort((a, b) => b.at.localeCompare(a.at));
    this.events.replaceChildren(...items.map((i) => i.el));
    if (!items.length) this.events.append(h("li", { text: "nothing halted or revoked" }));
  }

  /** @param {LogLine[]} logs @param {Version[]} versions */
  updateLogs(logs, versions) {
    this.logsBody.replaceChildren(...logs.map((line) => h("tr", {},
      h("td", { text: time(line.t) }),
      h("td", {}, h("span", { class: "swatch", style: { background: versionColor(line.version, versions) } }), line.version),
      h("td", {}, h("span", { class: `level ${line.level}`, text: line.level })),
      h("td", { text: line.logger }),
      h("td", { class: "message", text: line.message }))));
    if (!logs.length) this.logsBody.append(h("tr", {}, h("td", { colSpan: 5, class: "quiet", text: "no remote logs (turn them on below a channel's controls)" })));
  }
}

/** p50 to p99 as a band on a scale shared by the table's rows, with a mark at each percentile. */
function latencyStrip(/** @type {Stats} */ s, /** @type {number} */ slowest, /** @type {string} */ color) {
  const at = (/** @type {number | null} */ v) => `${(100 * (v ?? 0)) / slowest}%`;
  return h("div", { class: "strip", title: `p50 ${ms(s.p50)} · p95 ${ms(s.p95)} · p99 ${ms(s.p99)}` },
    h("span", { class: "range", style: { left: at(s.p50), width: `calc(${at(s.p99)} - ${at(s.p50)})`, background: color } }),
    ...[s.p50, s.p95, s.p99].map((v) => h("span", { class: "mark", style: { left: at(v), background: color } })));
}

/** Each signal's PSI against the bundle's reference, coloured by how far it drifted, with its histogram. */
function driftChips(/** @type {Stats | undefined} */ s, /** @type {string} */ color) {
  const signals = Object.entries(s?.signals ?? {});
  if (!signals.length) return h("span", { class: "quiet", text: "–" });
  return h("div", { class: "chips" }, ...signals.map(([name, signal]) => {
    const top = Math.max(1, ...signal.counts);
    return h("span", { class: `chip ${psiClass(signal.psi)}`, dataset: { signal: name }, title: `${signal.n} values` },
      `${name} ${signal.psi === null ? "–" : signal.psi.toFixed(3)}`,
      h("span", { class: "spark" }, ...signal.counts.map((c) => h("span", { style: { height: `${(100 * c) / top}%`, background: color } }))));
  }));
}

/** Rollout, rollback, revoke (with a confirm step) and remote logging for one bundle. */
class ReleaseControls {
  /**
   * @param {string} name
   * @param {() => Bundle | null} current the bundle as last read
   * @param {() => void} changed called after a control succeeded
   */
  constructor(name, current, changed) {
    this.name = name;
    this.current = current;
    this.changed = changed;
    this.channel = h("select", { name: "channel", "aria-label": "channel" });
    this.version = h("select", { name: "version", "aria-label": "version to roll out" });
    this.percent = h("input", { type: "number", name: "percent", min: 0, max: 100, value: 10, "aria-label": "rollout percent" });
    this.slider = h("input", { type: "range", min: 0, max: 100, value: 10, "aria-label": "rollout percent slider",
      oninput: () => { this.percent.value = this.slider.value; } });
    this.percent.addEventListener("input", () => { this.slider.value = this.percent.value; });
    this.revokeVersion = h("select", { name: "revoke-version", "aria-label": "version to revoke" });
    this.reason = h("input", { type: "text", name: "reason", placeholder: "reason (shown here and in the CLI)", maxLength: 500 });
    this.confirmText = h("span");
    this.confirm = h("div", { class: "confirm", hidden: true }, this.confirmText,
      h("button", { type: "button", class: "danger", name: "confirm-revoke", text: "Revoke for good", onclick: () => this.revoke() }),
      h("button", { type: "button", name: "cancel-revoke", text: "Cancel", onclick: () => { this.confirm.hidden = true; } }));
    this.logShare = h("input", { type: "number", name: "log-share", min: 0, max: 100, value: 0, "aria-label": "remote logging share" });
    this.logLevel = h("select", { name: "log-level", "aria-label": "remote log level" },
      ...["debug", "info", "warning", "error"].map((level) => h("option", { value: level, text: level, selected: level === "warning" })));
    this.outcome = h("p", { class: "outcome", role: "status" });
    this.root = h("div", { class: "controls" },
      h("fieldset", {}, h("legend", { text: "Roll out" }), this.channel, this.version, this.slider, this.percent, "%",
        h("button", { type: "button", class: "primary", name: "rollout", text: "Roll out", onclick: () => this.rollout() }),
        h("button", { type: "button", name: "rollback", text: "Roll back newest", onclick: () => this.rollback() })),
      h("fieldset", {}, h("legend", { text: "Revoke a version (never served again; devices holding it stop using it)" }),
        this.revokeVersion, this.reason,
        h("button", { type: "button", name: "revoke", text: "Revoke…", onclick: () => this.askRevoke() }), this.confirm),
      h("fieldset", {}, h("legend", { text: "Remote logs from a share of the channel's devices (0 turns them off)" }),
        this.logShare, "%", this.logLevel,
        h("button", { type: "button", name: "logging", text: "Set logging", onclick: () => this.logging() })),
      this.outcome);
  }

  /** @param {Bundle} bundle */
  update(bundle) {
    const channels = bundle.channels.map((c) => c.channel);
    fillSelect(this.channel, channels.length ? channels : ["stable"]);
    fillSelect(this.version, bundle.versions.filter((v) => !v.revoked_at).map((v) => v.version));
    fillSelect(this.revokeVersion, bundle.versions.filter((v) => !v.revoked_at).map((v) => v.version));
  }

  async rollout() {
    const percent = Number(this.percent.value);
    await this.act(`/channels/${this.channel.value}/rollout`, { version: this.version.value, percent },
      `${this.version.value} rolled out to ${percent}% of ${this.channel.value}`);
  }

  async rollback() {
    await this.act(`/channels/${this.channel.value}/rollback`, {}, `rolled back the newest release of ${this.channel.value}`);
  }

  askRevoke() {
    if (!this.revokeVersion.value) return;
    this.confirmText.textContent = `Revoke ${this.name} ${this.revokeVersion.value}? No device will be given it again.`;
    this.confirm.hidden = false;
  }

  async revoke() {
    this.confirm.hidden = true;
    const version = this.revokeVersion.value;
    await this.act(`/versions/${encodeURIComponent(version)}/revoke`, { reason: this.reason.value }, `${version} revoked`);
    this.reason.value = "";
  }

  async logging() {
    const share = Number(this.logShare.value);
    await this.act(`/channels/${this.channel.value}/logging`, { share, level: this.logLevel.value },
      share ? `remote logs from ${share}% of ${this.channel.value} at ${this.logLevel.value}+` : `remote logs off on ${this.channel.value}`);
  }

  /** @param {string} path below the bundle @param {object} body @param {string} done */
  async act(path, body, done) {
    for (const button of this.root.querySelectorAll("button")) button.disabled = true;
    try {
      await api(`/bundles/${encodeURIComponent(this.name)}${path}`, body);
      this.say(done, false);
      this.changed();
    } catch (error) {
      if (error instanceof Unauthorized) askForToken(error.message);
      this.say(error.message, true);
    } finally {
      for (const button of this.root.querySelectorAll("button")) button.disabled = false;
    }
  }

  /** @param {string} text @param {boolean} failed */
  say(text, failed) {
    this.outcome.textContent = text;
    this.outcome.classList.toggle("error", failed);
  }
}

/** Replace a select's options only when they changed, keeping the choice. @param {HTMLSelectElement} select @param {string[]} values */
function fillSelect(select, values) {
  const now = [...select.options].map((o) => o.value);
  if (now.join("\n") === values.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...values.map((v) => h("option", { value: v, text: v })));
  if (values.includes(chosen)) select.value = chosen;
}

/** @param {"idle" | "loading" | "live" | "error"} mode @param {string} text */
function showRefresh(mode, text) {
  const status = /** @type {HTMLElement} */ (document.getElementById("refresh"));
  status.dataset.state = mode;
  /** @type {HTMLElement} */ (document.getElementById("refresh-text")).textContent = text;
}

async function refresh() {
  clearTimeout(state.timer);
  if (!state.token) return;
  showRefresh("loading", "refreshing…");
  try {
    const { bundles } = await api("/bundles");
    const details = await Promise.all(bundles.map((/** @type {Bundle} */ b) => api(`/bundles/${encodeURIComponent(b.name)}`)));
    render(details);
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
    showRefresh("live", `live · updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (error instanceof Unauthorized) {
      askForToken(error.message);
      return;
    }
    showRefresh("error", `could not refresh: ${error.message}`);
  }
  state.timer = window.setTimeout(refresh, REFRESH_MS);
}

/** @param {Bundle[]} bundles */
function render(bundles) {
  const main = /** @type {HTMLElement} */ (document.getElementById("bundles"));
  /** @type {HTMLElement} */ (document.getElementById("empty")).hidden = bundles.length > 0;
  for (const [name, view] of state.views) {
    if (!bundles.some((b) => b.name === name)) {
      view.root.remove();
      state.views.delete(name);
    }
  }
  for (const bundle of bundles) {
    let view = state.views.get(bundle.name);
    if (!view) {
      view = new BundleView(bundle.name);
      state.views.set(bundle.name, view);
      main.append(view.root); // in the page before its charts are drawn: they take its width
    }
    view.update(bundle);
  }
}

/** @param {string} [why] the server's reason the token was refused */
function askForToken(why) {
  clearTimeout(state.timer);
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  const form = /** @type {HTMLFormElement} */ (document.getElementById("token-form"));
  const error = /** @type {HTMLElement} */ (document.getElementById("token-error"));
  error.hidden = !why;
  error.textContent = why ?? "";
  form.hidden = false;
  /** @type {HTMLElement} */ (document.getElementById("sign-out")).hidden = true;
  /** @type {HTMLElement} */ (document.getElementById("bundles")).hidden = true;
  showRefresh("idle", "waiting for the admin token");
  /** @type {HTMLInputElement} */ (document.getElementById("token")).focus();
}

/** @param {string} token */
function start(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  /** @type {HTMLElement} */ (document.getElementById("token-form")).hidden = true;
  /** @type {HTMLElement} */ (document.getElementById("sign-out")).hidden = false;
  /** @type {HTMLElement} */ (document.getElementById("bundles")).hidden = false;
  refresh();
}

function main() {
  const form = /** @type {HTMLFormElement} */ (document.getElementById("token-form"));
  const input = /** @type {HTMLInputElement} */ (document.getElementById("token"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    input.value = "";
    if (token) start(token);
  });
  document.getElementById("sign-out")?.addEventListener("click", () => askForToken());
  window.addEventListener("resize", () => state.views.forEach((view) => view.charts.forEach((chart) => chart.resize())));
  if (state.token) start(state.token);
  else askForToken();
}

main();
