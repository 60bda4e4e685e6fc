// cairn web UI: the only script. It signs in and out, sends the buttons'
// requests to the REST API (session cookie + X-CSRF-Token from the page's
// meta tag), and keeps the page current from the API's server-sent events
// (EventSource reconnects by itself and resumes with Last-Event-ID).
"use strict";
(function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var live = document.getElementById("live");

  function say(text, failed) {
    if (!live) return;
    live.textContent = text;
    live.className = failed ? "live failed" : "live";
  }

  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (csrf) init.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        return { status: r.status, ok: r.ok, json: json, headers: r.headers };
      });
    });
  }

  function problem(res) {
    if (res.json && res.json.message) return res.json.message;
    if (res.status === 401) return "Your session ended: sign in again.";
    if (res.status === 403) return "Your role may not do this.";
    return "The request failed (HTTP " + res.status + ").";
  }

  function enc(s) { return encodeURIComponent(s); }

  // Signing in: the form goes to the API as JSON; the answer sets the cookie.
  var login = document.getElementById("login");
  if (login) {
    login.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var error = document.getElementById("login-error");
      error.hidden = true;
      api("POST", "/api/v1/session", {
        user: login.elements.user.value,
        password: login.elements.password.value
      }).then(function (res) {
        if (res.ok) {
          location.assign(login.getAttribute("data-next") || "/");
          return;
        }
        if (res.status === 429) {
          var wait = res.headers.get("Retry-After");
          error.textContent = "Too many attempts. Try again" + (wait ? " in " + wait + " seconds." : " later.");
        } else {
          // Never which of the two was wrong.
          error.textContent = "Sign-in failed: the user name or the password is wrong.";
        }
        error.hidden = false;
        login.elements.password.value = "";
        login.elements.password.focus();
      }, function () {
        error.textContent = "The daemon cannot be reached.";
        error.hidden = false;
      });
    });
  }

  document.addEventListener("click", function (ev) {
    var t = ev.target.closest ? ev.target.closest("button") : null;
    if (!t) return;
    var root = document.getElementById("refresh");
    var job = root ? root.getAttribute("data-job") : null;
    if (t.hasAttribute("data-logout")) {
      api("DELETE", "/api/v1/session").then(function () { location.assign("/login"); });
    } else if (t.hasAttribute("data-run") && job) {
      run(t, job, t.getAttribute("data-run"), false);
    } else if (t.hasAttribute("data-job-action") && job) {
      var action = t.getAttribute("data-job-action");
      busy(t, api("POST", "/api/v1/jobs/" + enc(job) + "/" + action).then(function (res) {
        if (res.ok) { say(job + (action === "pause" ? " is paused." : " is resumed.")); refresh(); }
        else say(problem(res), true);
      }));
    } else if (t.hasAttribute("data-prune-plan") && job) {
      prunePlan(t, job);
    } else if (t.hasAttribute("data-prune-apply") && job) {
      if (window.confirm("Delete the artifacts this plan lists from " + job + "?")) run(t, job, "prune", false);
    } else if (t.hasAttribute("data-schedule-clear") && job) {
      busy(t, api("DELETE", "/api/v1/jobs/" + enc(job) + "/schedule").then(function (res) {
        if (res.ok) { say("The schedule of " + job + " is the config's again."); refresh(); }
        else say(problem(res), true);
      }));
    } else if (t.hasAttribute("data-check")) {
      var check = t.getAttribute("data-check");
      busy(t, api("POST", "/api/v1/checks/" + enc(check) + "/runs").then(function (res) {
        if (res.ok) { say("Check " + check + " started."); refresh(); }
        else say(problem(res), true);
      }));
    } else if (t.hasAttribute("data-notify-test")) {
      var channel = t.getAttribute("data-notify-test");
      busy(t, api("POST", "/api/v1/notifications/" + enc(channel) + "/test").then(function (res) {
        if (res.ok) say("A test was sent to " + channel + ".");
        else say(problem(res), true);
      }));
    }
  });

  function busy(button, promise) {
    button.disabled = true;
    var done = function () { button.disabled = false; };
    promise.then(done, function () { done(); say("The daemon cannot be reached.", true); });
  }

  function run(button, job, kind, dryRun) {
    busy(button, api("POST", "/api/v1/jobs/" + enc(job) + "/runs", { kind: kind, dry_run: dryRun }).then(function (res) {
      if (res.status === 202 || res.ok) {
        var id = res.json && res.json.run_id;
        say("Started " + kind + (id ? " run " + id : "") + " of " + job + ".");
        refresh();
      } else if (res.status === 409) {
        say(job + " is already running.", true);
      } else {
        say(problem(res), true);
      }
    }));
  }

  // A prune is planned first (a dry run); the plan is shown and only then applied.
  function prunePlan(button, job) {
    var box = document.getElementById("prune-plan");
    var text = document.getElementById("prune-plan-text");
    busy(button, api("POST", "/api/v1/jobs/" + enc(job) + "/runs?wait=60", { kind: "prune", dry_run: true }).then(function (res) {
      if (!res.ok && res.status !== 202) { say(problem(res), true); return; }
      var shown = function (plan) {
        text.textContent = plan || "The plan deletes nothing.";
        box.hidden = false;
        say("Prune plan ready: nothing is deleted until you apply it.");
      };
      var j = res.json || {};
      if (j.plan !== undefined) { shown(typeof j.plan === "string" ? j.plan : JSON.stringify(j.plan, null, 2)); return; }
      if (j.run_id) {
        return api("GET", "/api/v1/runs/" + enc(j.run_id)).then(function (r) {
          var run = r.json || {};
          shown(run.log || run.error || JSON.stringify(run.details || {}, null, 2));
        });
      }
      shown(JSON.stringify(j, null, 2));
    }));
  }

  // Delegated: the form is part of what a refresh swaps in.
  document.addEventListener("submit", function (ev) {
    var schedule = ev.target;
    if (!schedule || schedule.id !== "schedule-form") return;
    ev.preventDefault();
    var job = document.getElementById("refresh").getAttribute("data-job");
    var mode = schedule.elements.mode.value;
    var body = mode === "disabled" ? { mode: "disabled" } : { mode: "cron", cron: schedule.elements.cron.value.trim() };
    api("PUT", "/api/v1/jobs/" + enc(job) + "/schedule", body).then(function (res) {
      if (res.ok) { say("The schedule of " + job + " is overridden."); refresh(); }
      else say(problem(res), true);
    }, function () { say("The daemon cannot be reached.", true); });
  });

  // Restore: the dry-run plan first, then the typed confirmation, then the run's live log.
  var restoreForm = document.getElementById("restore-form");
  if (restoreForm) {
    var restoreBody = function (dryRun) {
      var body = { artifact: restoreForm.getAttribute("data-artifact"), dry_run: dryRun };
      var from = restoreForm.getAttribute("data-destination");
      if (from) body.destination = from;
      var to = restoreForm.elements.to;
      if (to && to.value === "root") body.target = restoreForm.elements.target.value.trim();
      return body;
    };
    var restoreJob = restoreForm.getAttribute("data-job");
    var restorePath = "/api/v1/jobs/" + enc(restoreJob) + "/restore";
    var followRun = function (id) {
      var box = document.getElementById("restore-run");
      var log = document.getElementById("restore-run-log");
      var status = document.getElementById("restore-run-status");
      document.getElementById("restore-run-id").textContent = id;
      box.hidden = false;
      var poll = function () {
        api("GET", "/api/v1/runs/" + enc(id)).then(function (res) {
          var run = res.json || {};
          if (typeof run.log === "string") log.textContent = run.log;
          if (run.status) { status.textContent = run.status; status.className = "badge " + run.status; }
          if (res.ok && run.status === "running") setTimeout(poll, 1000);
          else if (run.status === "success") say("The restore of " + restoreJob + " finished.");
          else say("The restore of " + restoreJob + " failed: " + (run.error || problem(res)), true);
        }, function () { setTimeout(poll, 2000); });
      };
      poll();
    };
    document.addEventListener("click", function (ev) {
      var t = ev.target.closest("button");
      if (!t) return;
      if (t.hasAttribute("data-restore-plan")) {
        busy(t, api("POST", restorePath, restoreBody(true)).then(function (res) {
          if (!res.ok) { say(problem(res), true); return; }
          var plan = res.json || {};
          var lines = (plan.actions || []).slice();
          if (plan.safety_copy) lines.push("the current content is kept at " + plan.safety_copy);
          document.getElementById("restore-plan-text").textContent = lines.join("\n");
          document.getElementById("restore-plan").hidden = false;
          say("Plan ready: nothing is written until you confirm.");
        }));
      } else if (t.hasAttribute("data-restore-apply")) {
        var body = restoreBody(false);
        body.confirm = document.getElementById("restore-confirm").value;
        busy(t, api("POST", restorePath, body).then(function (res) {
          if (res.status === 202 || res.ok) followRun(res.json.run_id);
          else say(problem(res), true);
        }));
      }
    });
  }

  // "Running for …" counters.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var s = Math.max(0, Math.round((now - Date.parse(el.getAttribute("data-since"))) / 1000));
      el.textContent = s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
    });
  }
  tick();
  setInterval(tick, 1000);

  // The page's data part is rendered again by the server and swapped in.
  var pending = null;
  function refresh() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      var root = document.getElementById("refresh");
      if (!root) return;
      var active = document.activeElement;
      if (active && root.contains(active) && active.tagName === "INPUT") { refresh(); return; }
      fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
        if (r.redirected || r.status !== 200) return null;
        return r.text();
      }).then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("refresh");
        if (!next) return;
        var open = {};
        root.querySelectorAll("tr[data-run-id] details[open]").forEach(function (d) {
          open[d.closest("tr").getAttribute("data-run-id")] = true;
        });
        var plan = document.getElementById("prune-plan");
        var planHidden = plan ? plan.hidden : true;
        var planText = plan ? document.getElementById("prune-plan-text").textContent : "";
        root.replaceWith(next);
        next.querySelectorAll("tr[data-run-id] details").forEach(function (d) {
          if (open[d.closest("tr").getAttribute("data-run-id")]) d.open = true;
        });
        var plan2 = document.getElementById("prune-plan");
        if (plan2 && !planHidden) { plan2.hidden = false; document.getElementById("prune-plan-text").textContent = planText; }
        tick();
        followLogs();
      }, function () {});
    }, 300);
  }

  // The log of a running run, fetched while it runs.
  var following = {};
  function followLogs() {
    document.querySelectorAll("[data-live-log]").forEach(function (d) {
      var id = d.getAttribute("data-live-log");
      if (following[id]) return;
      following[id] = true;
      var poll = function () {
        api("GET", "/api/v1/runs/" + enc(id)).then(function (res) {
          var run = res.json || {};
          var el = document.querySelector('[data-live-log="' + id + '"] pre');
          if (el && typeof run.log === "string") el.textContent = run.log;
          if (res.ok && run.status === "running") setTimeout(poll, 2000);
          else { delete following[id]; refresh(); }
        }, function () { delete following[id]; });
      };
      poll();
    });
  }
  followLogs();

  if (document.getElementById("refresh") && window.EventSource) {
    var events = new EventSource("/api/v1/events");
    events.onmessage = refresh;
    ["run", "run.started", "run.finished", "run.progress", "job", "check"].forEach(function (name) {
      events.addEventListener(name, refresh);
    });
  }
})();
