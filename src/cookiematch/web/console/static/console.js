// The console's charts: each <figure class=chart data-source=URL> is drawn with uPlot from
// the JSON of /console/api/series ({t: [unix seconds], lines: {name: [value|null]}}).
"use strict";
(function () {
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function draw(figure, data) {
    const names = Object.keys(data.lines);
    figure.dataset.points = String(data.t.length);
    figure.dataset.lines = String(names.length);
    if (data.t.length === 0 || names.length === 0) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No data yet.";
      figure.appendChild(empty);
      figure.dataset.state = "empty";
      return;
    }
    const unit = figure.dataset.unit || (data.counter ? "/s" : "");
    const series = [{}].concat(names.map(function (name, i) {
      return { label: name, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false,
               value: function (u, v) { return v == null ? "-" : (+v.toPrecision(4)) + unit; } };
    }));
    const options = {
      width: Math.max(figure.clientWidth - 8, 320), height: 220, series: series,
      axes: [{}, { size: 60 }], scales: { x: { time: true } },
    };
    new uPlot(options, [data.t].concat(names.map(function (n) { return data.lines[n]; })), figure);
    figure.dataset.state = "drawn";
  }

  function load(figure) {
    fetch(figure.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) { draw(figure, data); })
      .catch(function (error) {
        const failed = document.createElement("p");
        failed.className = "error";
        failed.textContent = "Could not load: " + error.message;
        figure.appendChild(failed);
        figure.dataset.state = "failed";
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("figure.chart").forEach(load);
  });
})();
