/* cookiematch DMP container tag: sync pixels and the client's other tags, off the page's way. */
(function (w, d) {
  "use strict";
  var C = __CONFIG__;
  var PRIVACY = ["gdpr", "gdpr_consent", "us_privacy", "gpp", "gpp_sid"];
  var state = (w.cmdmp = w.cmdmp || { pixels: [], tags: [], images: [] });

  // Privacy signals come from this script's own URL: tag.js?client=..&gdpr=1&gdpr_consent=..
  function privacyQuery() {
    var s = d.currentScript, out = "", p;
    if (!s || !s.src) return out;
    try { p = new URL(s.src).searchParams; } catch (e) { return out; }
    PRIVACY.forEach(function (n) {
      var v = p.get(n);
      if (v) out += "&" + n + "=" + encodeURIComponent(v);
    });
    return out;
  }

  function image(url) {
    var i = new Image(1, 1);
    state.images.push(i); // keep a reference until it loads
    i.onload = i.onerror = function () { state.images.splice(state.images.indexOf(i), 1); };
    i.src = url;
  }

  function script(url) {
    var s = d.createElement("script");
    s.async = true;
    s.src = url;
    (d.head || d.documentElement).appendChild(s);
  }

  // Frequency caps: fire times per tag in the page origin's localStorage; no storage, no
  // capped tag (a cap is never exceeded).
  function underCap(tag, now) {
    if (!tag.cap) return true;
    var key = "cmdmp_fc:" + C.client + ":" + tag.id, period = tag.period_hours * 3600000;
    try {
      var times = JSON.parse(w.localStorage.getItem(key) || "[]");
      if (!Array.isArray(times)) times = [];
      times = times.filter(function (t) { return typeof t === "number" && now - t < period; });
      if (times.length >= tag.cap) return false;
      times.push(now);
      w.localStorage.setItem(key, JSON.stringify(times));
      return true;
    } catch (e) {
      return false;
    }
  }

  function otherTags() {
    var now = Date.now();
    C.tags.forEach(function (tag) {
      if (!underCap(tag, now)) return;
      state.tags.push(tag.id);
      (tag.kind === "script" ? script : image)(tag.url);
    });
  }

  function sync(query) {
    if (!w.fetch) return;
    w.fetch(C.sync + query, { credentials: "include", mode: "cors", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : { pixels: [] }; })
      .then(function (j) {
        (j.pixels || []).forEach(function (url) { state.pixels.push(url); image(url); });
      })
      .catch(function () {})
      .then(function () { state.synced = true; });
  }

  var query = privacyQuery(); // currentScript is only set while this runs
  sync(query);
  otherTags();
})(window, document);
