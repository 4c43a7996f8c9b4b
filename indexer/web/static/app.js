// As-you-type suggestions for the search box: GET /api/suggest?q=..., a list of links.
// The page works without it (the form submits to /search). Names are set with textContent
// and links built with encodeURIComponent: nothing from the index is parsed as HTML.
(function () {
  "use strict";
  var input = document.getElementById("q");
  var list = document.getElementById("suggestions");
  if (!input || !list || !window.fetch) { return; }
  var api = list.getAttribute("data-api") || "/api/suggest";
  var base = list.getAttribute("data-binary-base") || "/binary/";
  var timer = null;
  var asked = "";

  function render(names) {
    list.textContent = "";
    names.forEach(function (name) {
      var item = document.createElement("li");
      var anchor = document.createElement("a");
      anchor.href = base + encodeURIComponent(name);
      anchor.textContent = name;
      item.appendChild(anchor);
      list.appendChild(item);
    });
    list.hidden = names.length === 0;
  }

  function ask() {
    var q = input.value.trim();
    if (q === asked) { return; }
    asked = q;
    if (!q) { render([]); return; }
    fetch(api + "?q=" + encodeURIComponent(q), { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { suggestions: [] }; })
      .then(function (data) {
        if (input.value.trim() === q) { render(Array.isArray(data.suggestions) ? data.suggestions : []); }
      })
      .catch(function () { render([]); });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 120);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown" && !list.hidden) {
      var first = list.querySelector("a");
      if (first) { first.focus(); event.preventDefault(); }
    }
  });
  list.addEventListener("keydown", function (event) {
    var current = document.activeElement;
    if (!current || current.tagName !== "A") { return; }
    var item = current.parentElement;
    var next = event.key === "ArrowDown" ? item.nextElementSibling
      : event.key === "ArrowUp" ? item.previousElementSibling : null;
    if (next) { next.querySelector("a").focus(); event.preventDefault(); }
    else if (event.key === "ArrowUp") { input.focus(); event.preventDefault(); }
  });
  if (input.value.trim()) { ask(); }
}());
