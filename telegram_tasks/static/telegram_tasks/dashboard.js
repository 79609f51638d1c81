// The dashboard's charts (Chart.js, served by the app) and its own refresh. Data come from
// json_script elements; a refresh reads the page again and swaps its live part (#tg-live),
// charts updated in place. A click on a bar opens the list of that bucket's tasks.
(function () {
  "use strict";
  var root = document.querySelector(".tg-dashboard");
  var every = (parseInt(root.dataset.refreshSeconds, 10) || 15) * 1000;
  var style = getComputedStyle(document.documentElement);
  Chart.defaults.color = style.getPropertyValue("--body-fg").trim() || "#333";
  Chart.defaults.borderColor = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
  Chart.defaults.animation = false;

  function data(doc, id) { return JSON.parse(doc.getElementById(id).textContent); }

  // The buckets the rollup has not reached yet, hatched: their bars are still to come.
  var notCounted = {
    id: "notCounted",
    beforeDatasetsDraw: function (chart) {
      var counted = chart.config.data.counted, n = chart.config.data.labels.length;
      if (counted === undefined || counted >= n) return;
      var x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      var left = counted === 0 ? area.left
        : (x.getPixelForValue(counted - 1) + x.getPixelForValue(counted)) / 2;
      ctx.save();
      ctx.fillStyle = "rgba(128, 128, 128, 0.15)";
      ctx.fillRect(left, area.top, area.right - left, area.bottom - area.top);
      ctx.font = "11px sans-serif";
      if (ctx.measureText("not counted yet").width + 8 < area.right - left) {  // else the note says it
        ctx.fillStyle = Chart.defaults.color;
        ctx.textAlign = "right";
        ctx.fillText("not counted yet", area.right - 4, area.top + 12);
      }
      ctx.restore();
    },
  };

  function openBucket(chart) {
    return function (event, elements) {
      if (!elements.length) return;
      var el = elements[0], d = chart().config.data;
      var w = d.windows[el.index], link = d.datasets[el.datasetIndex].link;
      if (!w || !link) return;
      window.location.href = link + "&finished_from=" + encodeURIComponent(w[0]) +
        "&finished_to=" + encodeURIComponent(w[1]);
    };
  }

  function bars(id, source) {
    var chart;
    chart = new Chart(document.getElementById(id), {
      type: "bar",
      data: source,
      plugins: [notCounted],
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: { x: { stacked: true, ticks: { maxTicksLimit: 12, maxRotation: 0 } },
                  y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        onClick: openBucket(function () { return chart; }),
        onHover: function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        },
      },
    });
    return chart;
  }

  function passes(source) {
    return new Chart(document.getElementById("chart-passes"), {
      type: "line",
      data: source,
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: { x: { ticks: { maxTicksLimit: 10, maxRotation: 0 } },
                  y: { beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        // Points only while there are few passes: a single pass is a point, not an empty chart.
        elements: { point: { radius: source.labels.length > 30 ? 0 : 3 } },
      },
    });
  }

  function draw() {
    window.tgCharts = {
      done: bars("chart-done", data(document, "data-done")),
      failed: bars("chart-failed", data(document, "data-failed")),
      passes: passes(data(document, "data-passes")),
    };
  }

  draw();

  // --- refresh ------------------------------------------------------------------------------
  var paused = false, timer = null;
  var toggle = document.getElementById("refresh-toggle");
  var status = document.getElementById("refresh-status");
  var box = status.parentNode;

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(refresh, every);
  }

  function refresh() {
    if (document.hidden) { schedule(); return; }  // a tab in the background reads nothing
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("tg-live");
        if (!fresh) throw new Error("not the dashboard (signed out?)");
        var open = document.getElementById("refusal-key").open;
        Object.values(window.tgCharts).forEach(function (c) { c.destroy(); });
        document.getElementById("tg-live").replaceWith(fresh);
        document.getElementById("refusal-key").open = open;
        draw();
        box.classList.remove("tg-stale");
        status.innerHTML = "updated <time id=\"updated-at\">" + fresh.dataset.now +
          "</time> · every " + every / 1000 + " s";
      })
      .catch(function (err) {
        box.classList.add("tg-stale");
        status.textContent = "refresh failed (" + err.message + "); numbers as of " +
          document.getElementById("tg-live").dataset.now + ", trying again";
      })
      .then(schedule);
  }

  window.tgRefresh = refresh;  // (a refresh now: the browser tests, a console)
  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", String(paused));
    if (paused) {
      clearTimeout(timer);
      status.textContent = "paused; numbers as of " + document.getElementById("tg-live").dataset.now;
    } else {
      refresh();
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !paused) refresh();
  });
  schedule();
})();
