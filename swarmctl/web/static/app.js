// swarmctl web view: renders the snapshots the daemon pushes over Server-Sent Events (/api/events).
"use strict";
(function () {
  // Set once per page load; a test checks that it never changes (no reload).
  window.swarmctlLoadId = Date.now() + "-" + Math.random().toString(36).slice(2);
  document.documentElement.setAttribute("data-load-id", window.swarmctlLoadId);
  var last = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined) return;
      if (k === "text") e.textContent = v; else e.setAttribute(k, String(v));
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function age(seconds) {
    if (!(seconds >= 0)) return "";
    if (seconds < 60) return Math.floor(seconds) + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m";
    if (seconds < 86400) return Math.floor(seconds / 3600) + "h";
    return Math.floor(seconds / 86400) + "d";
  }

  function labels(obj) {
    var keys = Object.keys(obj || {}).sort();
    return el("div", {"class": "labels"}, keys.map(function (k) {
      return el("span", {"class": "label", "data-label": k, text: obj[k] === "" ? k : k + "=" + obj[k]});
    }));
  }

  function taskCard(t, now) {
    var since = t.timestamp ? age(now - t.timestamp) : "";
    var title = [t.name, "image: " + t.image, "slot: " + (t.slot === null ? "-" : t.slot),
                 "state: " + t.state + (since ? " for " + since : ""), "desired: " + t.desired_state];
    if (t.message) title.push("message: " + t.message);
    if (t.err) title.push("error: " + t.err);
    return el("div", {"class": "task", "data-task-id": t.id, "data-service-id": t.service_id,
                      "data-state": t.state, "data-desired-state": t.desired_state, "data-slot": t.slot,
                      title: title.join("\n")},
              [el("div", {"class": "name", text: t.name + " · " + t.state + (since ? " " + since : "")}),
               el("div", {"class": "img", text: t.image})]);
  }

  function groups(tasks, now) {
    var byService = {}, order = [];
    tasks.forEach(function (t) {
      if (!byService[t.service_name]) { byService[t.service_name] = []; order.push(t.service_name); }
      byService[t.service_name].push(t);
    });
    return order.map(function (name) {
      return el("div", {"class": "group", "data-service": name},
                [el("h4", {text: name})].concat(byService[name].map(function (t) { return taskCard(t, now); })));
    });
  }

  function render(s) {
    last = s;
    var now = s.time;
    var notice = document.getElementById("notice");
    notice.hidden = s.manager;
    notice.textContent = s.manager ? "" : "This node is not a manager (yet): nothing to show.";
    var byNode = {};
    s.tasks.forEach(function (t) { (byNode[t.node_id || ""] = byNode[t.node_id || ""] || []).push(t); });
    var nodes = document.getElementById("nodes");
    nodes.replaceChildren.apply(nodes, s.nodes.map(function (n) {
      var role = n.role + (n.reachability ? " (" + n.reachability + ")" : "");
      return el("div", {"class": "node", "data-node-id": n.id, "data-hostname": n.hostname, "data-role": n.role,
                        "data-leader": n.leader ? "true" : "false", "data-status": n.status,
                        "data-availability": n.availability},
                [el("h3", {text: n.hostname}, [n.leader ? el("span", {"class": "leader", title: "leader", text: " ★"}) : null]),
                 el("div", {"class": "meta", text: role + (n.leader ? ", leader" : "")}),
                 el("div", {"class": "meta", text: "status: " + n.status + ", availability: " + n.availability}),
                 el("div", {"class": "meta", text: n.addr || ""}),
                 labels(Object.assign({}, n.engine_labels, n.labels))].concat(groups(byNode[n.id] || [], now)));
    }));
    var unassigned = document.getElementById("unassigned");
    var pending = byNode[""] || [];
    unassigned.replaceChildren.apply(unassigned, pending.length ?
      [el("h2", {text: "Not yet on a node"})].concat(groups(pending, now)) : []);
    var body = document.querySelector("#services tbody");
    body.replaceChildren.apply(body, s.services.map(function (svc) {
      var r = svc.replicas;
      return el("tr", {"data-service-id": svc.id, "data-service-name": svc.name},
                [el("td", {text: svc.name}), el("td", {text: svc.mode}),
                 el("td", {"class": r.running < r.desired ? "bad" : "", "data-replicas": r.running + "/" + r.desired,
                           text: r.running + "/" + r.desired}),
                 el("td", {text: svc.image}), el("td", {text: svc.ports}),
                 el("td", {title: svc.update_message, text: svc.update_status.replace(/_/g, " ")})]);
    }));
    document.getElementById("updated").textContent = "index " + s.index + " · " + new Date(now * 1000).toLocaleTimeString();
    document.body.setAttribute("data-index", s.index);
  }

  function connect() {
    var conn = document.getElementById("conn");
    var source = new EventSource("/api/events");
    source.onopen = function () { conn.textContent = "live"; conn.setAttribute("data-conn", "live"); };
    source.onmessage = function (ev) { render(JSON.parse(ev.data)); };
    source.onerror = function () { conn.textContent = "reconnecting…"; conn.setAttribute("data-conn", "lost"); };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("running-only");
    toggle.checked = localStorage.getItem("swarmctl.runningOnly") === "1";
    document.body.classList.toggle("running-only", toggle.checked);
    toggle.addEventListener("change", function () {
      document.body.classList.toggle("running-only", toggle.checked);
      localStorage.setItem("swarmctl.runningOnly", toggle.checked ? "1" : "0");
    });
    connect();
  });
})();
