// The dashboard's charts (Chart.js, served by the app). Data come from json_script elements.
(function () {
  "use strict";
  function data(id) { return JSON.parse(document.getElementById(id).textContent); }
  var style = getComputedStyle(document.documentElement);
  var fg = style.getPropertyValue("--body-fg").trim() || "#333";
  var grid = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
  Chart.defaults.color = fg;
  Chart.defaults.borderColor = grid;
  Chart.defaults.animation = false;
  var common = { responsive: true, maintainAspectRatio: false };
  var passes = data("data-passes");
  window.tgCharts = {
    hourly: new Chart(document.getElementById("chart-hourly"), {
      type: "bar",
      data: data("data-hourly"),
      options: Object.assign({}, common, {
        scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      }),
    }),
    reasons: new Chart(document.getElementById("chart-reasons"), {
      type: "bar",
      data: data("data-reasons"),
      options: Object.assign({}, common, {
        indexAxis: "y",
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { display: false } },
      }),
    }),
    passes: new Chart(document.getElementById("chart-passes"), {
      type: "line",
      data: passes,
      options: Object.assign({}, common, {
        scales: { x: { ticks: { maxTicksLimit: 16 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        // Points only while there are few passes: a single pass is a point, not an empty chart.
        elements: { point: { radius: passes.labels.length > 30 ? 0 : 3 } },
      }),
    }),
  };
})();
