// canary console: small progressive touches only (pages work without it). Served from /static; no inline script.
"use strict";
(function () {
  function ago(ms) {
    var s = Math.round(ms / 1000), a = Math.abs(s), sign = s < 0 ? "in " : "";
    var t = a < 90 ? a + " s" : a < 5400 ? Math.round(a / 60) + " min" : a < 129600 ? Math.round(a / 3600) + " h" : Math.round(a / 86400) + " d";
    return s < 0 ? sign + t : t + " ago";
  }
  function times() {
    var now = Date.now();
    document.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.title = new Date(at).toString() + " (" + ago(now - at) + ")"; }
    });
  }
  document.addEventListener("submit", function (ev) {
    var button = ev.submitter || ev.target.querySelector("button[data-confirm]");
    var text = button && button.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { ev.preventDefault(); return; }
    if (button) { button.disabled = true; }  // one click, one request
  });
  document.addEventListener("DOMContentLoaded", times);
})();
