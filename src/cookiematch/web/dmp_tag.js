/* cookiematch DMP container tag: sync pixels and the client's other tags, off the page's way.
 *
 * 1. The privacy signals: those of this script's own URL (tag.js?client=..&gdpr=1&..), else
 *    what the page's CMP answers (TCF v2.2 __tcfapi, GPP 1.1 __gpp) within C.cmp_wait_ms.
 * 2. GET /sync with them: the DMP's privacy policy decides, and answers the partner pixels and
 *    what this tag may do ({"container": {"storage": bool, "tags": [ids]}}).
 * 3. The pixels, and the allowed tags; localStorage (frequency caps) only if storage is allowed.
 * Nothing is decided here: no answer from the DMP, no tag and no storage.
 */
(function (w, d) {
  "use strict";
  var C = __CONFIG__;
  var PRIVACY = ["gdpr", "gdpr_consent", "us_privacy", "gpp", "gpp_sid"];
  var state = (w.cmdmp = w.cmdmp || { pixels: [], tags: [], images: [] });

  // The privacy parameters of this script's own URL.
  function explicitSignals() {
    var s = d.currentScript, out = {}, p;
    if (!s || !s.src) return out;
    try { p = new URL(s.src).searchParams; } catch (e) { return out; }
    PRIVACY.forEach(function (n) {
      var v = p.get(n);
      if (v) out[n] = v;
    });
    return out;
  }

  // TCF v2.2: the first answer that is final (tcloaded, useractioncomplete); gdprApplies is
  // kept from any answer (and from the stub's ping, which a page may have told with
  // setGdprApplies), so a CMP still loading or waiting for the visitor yields gdpr=1 without
  // consent.
  function askTcf(found, done) {
    var api = w.__tcfapi;
    if (typeof api !== "function") return false;
    try {
      api("ping", 2, function (p) {
        if (p && typeof p.gdprApplies === "boolean" && !found.gdpr) {
          found.gdpr = p.gdprApplies ? "1" : "0";
        }
      });
      api("addEventListener", 2, function (tc, ok) {
        if (!ok || !tc) return;
        if (typeof tc.gdprApplies === "boolean") found.gdpr = tc.gdprApplies ? "1" : "0";
        if (tc.eventStatus !== "tcloaded" && tc.eventStatus !== "useractioncomplete") return;
        if (tc.gdprApplies && tc.tcString) found.gdpr_consent = tc.tcString;
        try { api("removeEventListener", 2, function () {}, tc.listenerId); } catch (e) {}
        done();
      });
    } catch (e) {
      return false;
    }
    return true;
  }

  // GPP 1.1: the string and the applicable sections once the signal is ready.
  function askGpp(found, done) {
    var api = w.__gpp, taken = false;
    if (typeof api !== "function") return false;
    function take(p) {
      if (taken || !p || p.signalStatus !== "ready") return false;
      taken = true;
      if (p.gppString) found.gpp = p.gppString;
      var sid = Array.isArray(p.applicableSections) ? p.applicableSections.join(",") : "";
      if (sid) found.gpp_sid = sid;
      done();
      return true;
    }
    try {
      api("addEventListener", function (evt, ok) {
        if (ok && evt && take(evt.pingData)) {
          try { api("removeEventListener", function () {}, evt.listenerId); } catch (e) {}
        }
      });
      api("ping", function (p, ok) { if (ok) take(p); });
    } catch (e) {
      return taken;
    }
    return true;
  }

  // The signals to send: the page's own first; the CMP's for a framework the page left out.
  function signals(then) {
    var given = explicitSignals(), found = {}, waiting = 1, finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      var out = {};
      PRIVACY.forEach(function (n) {
        var v = n in given ? given[n] : found[n];
        if (v) out[n] = v;
      });
      then(out);
    }
    function answered() { if (--waiting === 0) finish(); }
    function ask(cmp) { // a CMP may answer at once, or never: one count per CMP asked
      var once = false;
      waiting++;
      if (!cmp(found, function () { if (!once) { once = true; answered(); } })) {
        if (!once) { once = true; answered(); }
      }
    }
    if (!("gdpr" in given || "gdpr_consent" in given)) ask(askTcf);
    if (!("gpp" in given || "gpp_sid" in given)) ask(askGpp);
    answered(); // every CMP asked
    if (!finished) w.setTimeout(finish, C.cmp_wait_ms);
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

  // Frequency caps: fire times per tag in the page origin's localStorage, kept only where the
  // DMP allows storage; no storage, no capped tag (a cap is never exceeded).
  function underCap(tag, now, storage) {
    if (!tag.cap) return true;
    if (!storage) return false;
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

  function otherTags(allowed) {
    var now = Date.now(), ids = allowed.tags || [];
    C.tags.forEach(function (tag) {
      if (ids.indexOf(tag.id) < 0 || !underCap(tag, now, allowed.storage === true)) return;
      state.tags.push(tag.id);
      (tag.kind === "script" ? script : image)(tag.url);
    });
  }

  function sync(query) {
    if (!w.fetch) { state.synced = true; return; }
    w.fetch(C.sync + query, { credentials: "include", mode: "cors", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (j) {
        (j.pixels || []).forEach(function (url) { state.pixels.push(url); image(url); });
        state.allowed = j.container || { storage: false, tags: [] };
        otherTags(state.allowed);
      })
      .catch(function () {})
      .then(function () { state.synced = true; });
  }

  signals(function (found) { // currentScript is read at once, while this runs
    var query = "";
    Object.keys(found).forEach(function (n) { query += "&" + n + "=" + encodeURIComponent(found[n]); });
    state.privacy = found;
    sync(query);
  });
})(window, document);
