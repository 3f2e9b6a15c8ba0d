// Sendstream console: progressive enhancement only; every page works without it.
"use strict";

// One block: a page written over this one (an upload's answer) runs the file again in
// the same window, where top-level declarations would already exist.
{

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard (plain http on another host): select the text for the user to copy.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return;
  }
  button.classList.add("copied");
  button.setAttribute("aria-live", "polite");
  button.textContent = "Copied";
  setTimeout(() => { button.classList.remove("copied"); button.textContent = "Copy"; }, 2000);
});

// The overview: draw the series with uPlot, and refresh the figures and the chart while
// the page is shown.
const chartBox = document.getElementById("chart");
if (chartBox && chartBox.dataset.overview) {
  const COLOURS = {
    sent: "#1d5fd1", delivered: "#1b7a3d", deferred: "#c98a00",
    bounced: "#b3261e", open: "#7b3fc4", click: "#0a8a8a",
  };
  // An attribute, not a script block: the browser decodes the escaped JSON.
  const initial = JSON.parse(chartBox.dataset.overview);
  const toSeconds = (at) => Date.parse(at.length === 10 ? `${at}T00:00:00Z` : at) / 1000;
  const columns = (series, kinds) => [
    series.map((point) => toSeconds(point.At)),
    ...kinds.map((kind) => series.map((point) => point[kind])),
  ];
  let plot = null;
  const draw = () => {
    if (typeof uPlot === "undefined") return;
    const options = {
      width: chartBox.clientWidth,
      height: 260,
      scales: { x: { time: true } },
      series: [{}, ...initial.kinds.map((kind) => ({ label: kind, stroke: COLOURS[kind], width: 2 }))],
      axes: [{}, { size: 56 }],
    };
    plot = new uPlot(options, columns(initial.series, initial.kinds), chartBox);
  };
  window.addEventListener("load", draw);
  window.addEventListener("resize", () => {
    if (plot) plot.setSize({ width: chartBox.clientWidth, height: 260 });
  });
  const status = document.querySelector("[data-refreshed]");
  const refresh = async () => {
    if (document.hidden) return;
    const response = await fetch(`/console/overview.json?range=${encodeURIComponent(initial.range)}`,
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const fresh = await response.json();
    for (const element of document.querySelectorAll("[data-figure]")) {
      const value = fresh.Stats[element.dataset.figure];
      element.textContent = element.dataset.unit
        ? `${value} ${element.dataset.unit}` : Number(value).toLocaleString("en-US");
    }
    if (plot) plot.setData(columns(fresh.Series, initial.kinds));
    status.textContent = `Updated at ${new Date().toLocaleTimeString()}`;
  };
  setInterval(refresh, Number(chartBox.dataset.refreshSeconds || 10) * 1000);
}

// A form with data-progress uploads with a progress bar, then shows the answer's page.
for (const form of document.querySelectorAll("form[data-progress]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const bar = document.getElementById(form.dataset.progress);
    bar.hidden = false;
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", (progress) => {
      if (progress.lengthComputable) bar.value = (100 * progress.loaded) / progress.total;
    });
    request.upload.addEventListener("load", () => { bar.removeAttribute("value"); });
    request.addEventListener("load", () => {
      document.open();
      document.write(request.responseText);
      document.close();
    });
    request.send(new FormData(form));
  });
}
}

// A campaign's page: its progress bar, figures and throughput chart follow the sending,
// every two seconds, until the campaign is finished.
{
  const live = document.querySelector(".campaign-live[data-progress-url]");
  const finished = new Set(["Sent", "Cancelled", "Failed", "Draft"]);
  const chartBox = document.getElementById("throughput-chart");
  let plot = null;
  let kinds = [];
  // Each point counts a step's emails; the chart shows them per second, each held over its
  // step (a stepped line that ends where the last step does, so one step is drawn too).
  const columns = (chart) => {
    const times = chart.Series.map((point) => Date.parse(point.At) / 1000);
    if (times.length) times.push(times[times.length - 1] + chart.Step);
    const last = chart.Series[chart.Series.length - 1];
    return [times, ...kinds.map((kind) => [...chart.Series, last].filter(Boolean)
      .map((point) => point[kind] / chart.Step))];
  };
  if (chartBox) {
    const initial = JSON.parse(chartBox.dataset.throughput);
    kinds = initial.kinds;
    const COLOURS = { delivered: "#1b7a3d", deferred: "#c98a00", bounced: "#b3261e" };
    window.addEventListener("load", () => {
      if (typeof uPlot === "undefined") return;
      plot = new uPlot({
        width: chartBox.clientWidth,
        height: 220,
        scales: { x: { time: true } },
        series: [{}, ...kinds.map((kind) => ({
          label: `${kind}/s`, stroke: COLOURS[kind], width: 2,
          paths: uPlot.paths.stepped({ align: 1 }), points: { show: false },
        }))],
        axes: [{}, { size: 56 }],
      }, columns(initial), chartBox);
    });
    window.addEventListener("resize", () => {
      if (plot) plot.setSize({ width: chartBox.clientWidth, height: 220 });
    });
  }
  if (live && !finished.has(live.dataset.status)) {
    const bar = document.getElementById("progress");
    const timer = setInterval(async () => {
      if (document.hidden) return;
      const response = await fetch(live.dataset.progressUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      const campaign = await response.json();
      campaign.Throughput = campaign.CampaignThroughput ? campaign.CampaignThroughput.EmailsPerSecond : 0;  // while it sends
      for (const element of live.querySelectorAll("[data-field]")) {
        const value = campaign[element.dataset.field];
        element.textContent = element.dataset.field === "Progress" ? `${value} %` : String(value ?? 0);
      }
      bar.value = campaign.Progress;
      if (plot && campaign.Chart) {
        plot.setData(columns(campaign.Chart));
        document.querySelector("[data-step]").textContent = campaign.Chart.Step;
      }
      if (campaign.Status !== live.dataset.status) {
        // Another state offers other actions: the page again, as a GET.
        clearInterval(timer);
        window.location.assign(window.location.pathname);
      }
    }, 2000);
  }
}
